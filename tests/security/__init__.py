"""The attacker's tests (issue 15): each hole a hostile review found, tried again against the real services."""
