"""`python -m services.surveys`: the same as `kranj run surveys`."""

from shared.serve import serve

from .app import create_app

serve("surveys", create_app)
