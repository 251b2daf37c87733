"""`python -m services.booking`: the same as `kranj run booking`."""

from shared.serve import serve

from .app import create_app

serve("booking", create_app)
