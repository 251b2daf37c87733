"""surveys: needs-assessment surveys of the local communities and their results."""
