"""booking: the community rooms of every KS, their opening hours and bookings."""
