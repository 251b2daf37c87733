"""Run one service in the foreground: what `kranj run <service>` and each container do."""

from __future__ import annotations

import importlib
import sys

from shared.serve import serve
from shared.settings import SERVICES, Settings


def run_service(name: str, settings: Settings | None = None) -> None:
    """Find services/<name>/app.py by name and serve its `create_app` (shared/serve.py)."""
    if name not in SERVICES:
        sys.exit(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")

    def create_app(settings: Settings):
        return importlib.import_module(f"services.{name}.app").create_app(settings)

    serve(name, create_app, settings)
