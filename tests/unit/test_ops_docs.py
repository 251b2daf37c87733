"""The documents in docs/ are what the code says (`kranj docs` writes them)."""

from __future__ import annotations

import json

from kranj import docs


def test_checked_in_documents_are_current() -> None:
    outdated = docs.stale()
    assert not outdated, f"not current: {', '.join(outdated)}; run `kranj docs` and commit docs/"


def test_combined_document_has_every_service() -> None:
    combined = json.loads((docs.DOCS_DIR / "asyncapi" / "kranj.json").read_text())
    for service in docs.SERVICES:
        own = json.loads((docs.DOCS_DIR / "asyncapi" / f"{service}.json").read_text())
        for channel in own["channels"].values():
            addresses = {c["address"] for c in combined["channels"].values()}
            assert channel["address"] in addresses, (service, channel["address"])
    addresses = [c["address"] for c in combined["channels"].values()]
    assert "notify.notice.requested" in addresses and "bus.message.rejected" in addresses
    assert addresses.count("bus.message.rejected") == 1  # published by every service, documented once


def test_combined_renames_what_two_services_mean_differently() -> None:
    a = {
        "asyncapi": "3.0.0",
        "info": {"title": "a", "version": "1"},
        "channels": {"x": {"address": "a.x", "messages": {"M": {"$ref": "#/components/messages/m"}}}},
        "operations": {},
        "components": {"messages": {"m": {"payload": {"type": "string"}}}, "schemas": {}},
    }
    b = json.loads(json.dumps(a).replace('"a.x"', '"b.x"').replace('"string"', '"integer"'))
    combined = docs.combined_asyncapi({"one": a, "two": b})
    assert set(combined["channels"]) == {"x", "two.x"}
    assert combined["channels"]["two.x"]["messages"]["M"]["$ref"] == "#/components/messages/two.m"
    assert combined["components"]["messages"]["two.m"]["payload"]["type"] == "integer"
