"""The CloudEvents 1.0 envelope (structured JSON mode) and the message-type registry.

A consumer must not depend on AMQP properties: the body is authoritative. Unknown
extension attributes are kept, never refused.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import clock

TYPE_PREFIX = "si.kranj."
_TYPE_RE = re.compile(r"^si\.kranj\.(?P<key>[a-z0-9-]+\.[a-z0-9-]+\.[a-z0-9-]+)\.v(?P<major>\d+)$")
CONTENT_TYPE = "application/cloudevents+json"

D = TypeVar("D", bound=BaseModel)


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope; `data` is validated later against the type's schema."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = Field(description='Always "1.0".')
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    time: datetime | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    data: Any = None

    @field_validator("specversion")
    @classmethod
    def _v1(cls, value: str) -> str:
        if value != "1.0":
            raise ValueError(f'specversion must be "1.0", not {value!r}')
        return value

    @field_validator("datacontenttype")
    @classmethod
    def _json_only(cls, value: str | None) -> str | None:
        if value is not None and not (value == "application/json" or value.endswith("+json")):
            raise ValueError(f"datacontenttype must be application/json, not {value!r}")
        return value

    @property
    def routing_key(self) -> str | None:
        match = _TYPE_RE.match(self.type)
        return match["key"] if match else None


@dataclass(frozen=True)
class MessageType(Generic[D]):
    """One versioned message of the platform: routing key, CloudEvent type and data schema."""

    routing_key: str
    major: int
    data_model: type[D]
    description: str = ""

    @property
    def type(self) -> str:
        return f"{TYPE_PREFIX}{self.routing_key}.v{self.major}"

    def envelope(
        self,
        data: D | dict[str, Any],
        *,
        source: str,
        id: str | None = None,
        time: datetime | None = None,
        subject: str | None = None,
    ) -> dict[str, Any]:
        """A ready-to-publish CloudEvent as a JSON-able dict (the data validated first)."""
        model = data if isinstance(data, BaseModel) else self.data_model.model_validate(data)
        body: dict[str, Any] = {
            "specversion": "1.0",
            "id": id or str(uuid.uuid4()),
            "source": source,
            "type": self.type,
            "time": (time or clock.now()).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": model.model_dump(mode="json", exclude_none=True),
        }
        if subject:
            body["subject"] = subject
        return body


class Rejection(Exception):
    """A message that can never be processed: it is dead-lettered with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """A readable one-line reason: `data.ks.0: Input should be 'besnica', ... (got 'x')`."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        msg = err["msg"].removeprefix("Value error, ")
        if len(msg) > 200:
            msg = msg[:200] + "…"
        got = err.get("input")
        got_text = ""
        if (isinstance(got, (str, int, float, bool)) or got is None) and err["type"] != "value_error":
            got_text = f" (got {json.dumps(got, ensure_ascii=False)[:80]})"
        parts.append(f"{loc or 'body'}: {msg}{got_text}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


# Hostile bodies are refused before any handler sees them (issue #8): the largest message of
# the platform is a few kilobytes, and none nests deeper than a handful of levels.
MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 32


def _check_values(raw: Any) -> None:
    """Refuse what no database takes or what only an attacker sends: nesting deeper than
    `MAX_DEPTH`, NUL characters (PostgreSQL text cannot hold them) and lone surrogates
    (`"\\ud800"`: not encodable as UTF-8). Iterative, so depth itself cannot crash it."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise Rejection("body contains a NUL character (\\u0000)")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise Rejection(f"body contains text that is not valid Unicode: {exc.reason}") from exc
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise Rejection(f"body is nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((item, depth + 1))


def _may_hold_bad_values(text: str) -> bool:
    """Could the decoded JSON of `text` hold what `_check_values` refuses? A NUL or a lone
    surrogate can only come from a `\\u` escape (UTF-8 decoding refuses surrogates, and JSON
    refuses a raw NUL in a string), and nesting deeper than `MAX_DEPTH` needs more brackets
    than that. Most messages have neither: walking every value cost ~5 % of notify's ingest."""
    return "\\u" in text or "\x00" in text or text.count("{") + text.count("[") > MAX_DEPTH


def parse_envelope(body: bytes) -> CloudEvent:
    """Bytes from the wire -> a validated envelope, or `Rejection` with a readable reason."""
    if len(body) > MAX_BODY_BYTES:
        raise Rejection(f"body is too large: {len(body)} bytes (at most {MAX_BODY_BYTES})")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejection(f"body is not UTF-8 text: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejection(f"body is not JSON: {exc}") from exc
    except RecursionError as exc:  # "[[[[…" thousands deep
        raise Rejection(f"body is nested deeper than {MAX_DEPTH} levels") from exc
    if not isinstance(raw, dict):
        raise Rejection(f"body must be a JSON object (a CloudEvent), not {type(raw).__name__}")
    if _may_hold_bad_values(text):
        _check_values(raw)
    try:
        return CloudEvent.model_validate(raw)
    except ValidationError as exc:
        raise Rejection("not a valid CloudEvents 1.0 envelope: " + describe_validation_error(exc)) from exc


def parse_data(event: CloudEvent, message_type: MessageType[D]) -> D:
    try:
        return message_type.data_model.model_validate(event.data)
    except ValidationError as exc:
        raise Rejection(f"data does not match {message_type.type}: " + describe_validation_error(exc, "data")) from exc
