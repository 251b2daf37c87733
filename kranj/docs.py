"""The published documents, generated from the code: each service's AsyncAPI and OpenAPI
document and one AsyncAPI document of the whole platform.

    kranj docs            writes docs/asyncapi/<service>.json, docs/asyncapi/kranj.json
                          and docs/openapi/<service>.json
    kranj docs --check    exits 1 if a checked-in file differs from what the code says

The documents are built with fixed settings (the local defaults, a throw-away data dir),
so they do not depend on the machine or the environment they are generated on.
"""

from __future__ import annotations

import copy
import importlib
import json
import tempfile
from pathlib import Path
from typing import Any

from shared.settings import Settings

SERVICES = ("events", "booking", "surveys", "notify")
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"
DOC_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _settings(data_dir: str) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "amqp_url": DOC_AMQP_URL,
        "public_url": None,
        "admin_token": None,
        "secret_key": "docs-only-not-a-secret",
        "smtp_host": None,
        "sms_gateway_url": None,
    }
    for service in SERVICES:
        values[f"{service}_database_url"] = f"sqlite+aiosqlite:///{data_dir}/{service}.db"
    return Settings(**values)


def service_documents(service: str, settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(AsyncAPI, OpenAPI) of one service, as its running app serves them."""
    from shared.web import asyncapi_document

    module = importlib.import_module(f"services.{service}.app")
    asyncapi = asyncapi_document(module.build(settings))
    openapi = module.create_app(settings, migrate=False, start_bus=False).openapi()
    return asyncapi, openapi


def combined_asyncapi(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One AsyncAPI document of every service's channels, operations and components. What
    several services share (e.g. each publishes `bus.message.rejected`) appears once; a
    name used by two services for different things is prefixed with the service."""
    first = documents[next(iter(documents))]
    combined: dict[str, Any] = {
        "asyncapi": first["asyncapi"],
        "info": {
            "title": "Kranj ZA vse — all services",
            "version": first["info"]["version"],
            "description": first["info"].get("description", "")
            + " This document combines the documents of the services "
            + ", ".join(f"`{name}`" for name in documents)
            + ".",
        },
        "defaultContentType": first.get("defaultContentType", "application/json"),
        "servers": copy.deepcopy(first.get("servers", {})),
        "channels": {},
        "operations": {},
        "components": {"messages": {}, "schemas": {}},
    }
    for service, doc in documents.items():
        renames: dict[str, str] = {}
        doc = copy.deepcopy(doc)
        for section, target in (
            (doc.get("components", {}).get("schemas", {}), combined["components"]["schemas"]),
            (doc.get("components", {}).get("messages", {}), combined["components"]["messages"]),
            (doc.get("channels", {}), combined["channels"]),
            (doc.get("operations", {}), combined["operations"]),
        ):
            for key in section:
                if key in target and target[key] != section[key]:
                    renames[key] = f"{service}.{key}"
        if renames:
            doc = _rename_refs(doc, renames)
        for section, target in (
            ("schemas", combined["components"]["schemas"]),
            ("messages", combined["components"]["messages"]),
        ):
            for key, value in doc.get("components", {}).get(section, {}).items():
                target[renames.get(key, key)] = value
        for section in ("channels", "operations"):
            for key, value in doc.get(section, {}).items():
                combined[section][renames.get(key, key)] = value
    return combined


def _rename_refs(doc: Any, renames: dict[str, str]) -> Any:
    text = json.dumps(doc)
    for old, new in renames.items():
        for kind in ("components/schemas", "components/messages", "channels", "operations"):
            text = text.replace(f'"#/{kind}/{old}"', f'"#/{kind}/{new}"').replace(
                f'"#/{kind}/{old}/', f'"#/{kind}/{new}/'
            )
    return json.loads(text)


def render_all() -> dict[str, str]:
    """Relative path under docs/ -> file content, for every generated document."""
    files: dict[str, str] = {}
    asyncapis: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="kranj-docs-") as data_dir:
        settings = _settings(data_dir)
        for service in SERVICES:
            asyncapi, openapi = service_documents(service, settings)
            asyncapis[service] = asyncapi
            files[f"asyncapi/{service}.json"] = _dump(asyncapi)
            files[f"openapi/{service}.json"] = _dump(openapi)
    files["asyncapi/kranj.json"] = _dump(combined_asyncapi(asyncapis))
    return files


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_all(docs_dir: Path = DOCS_DIR) -> list[Path]:
    written = []
    for relative, content in render_all().items():
        path = docs_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            written.append(path)
    return written


def stale(docs_dir: Path = DOCS_DIR) -> list[str]:
    """The generated files that are missing or differ from what the code says."""
    return [
        relative
        for relative, content in render_all().items()
        if not (docs_dir / relative).exists() or (docs_dir / relative).read_text(encoding="utf-8") != content
    ]
