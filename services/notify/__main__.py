"""`python -m services.notify`: the same as `kranj run notify`."""

from shared.serve import serve

from .app import create_app

serve("notify", create_app)
