"""`python -m services.events`: the same as `kranj run events`."""

from shared.serve import serve

from .app import create_app

serve("events", create_app)
