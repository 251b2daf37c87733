"""events: community events and workshops, published to the bus through the outbox."""
