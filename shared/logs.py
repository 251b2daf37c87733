"""Structured logging: one JSON object per line, contact data never in full."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Not inside a word or an id (uuids, hex digests, timestamps stay readable for correlation).
_PHONE_RE = re.compile(r"(?<![\w-])(\+?\d{3})[\d ]{4,}(\d{2})(?![\w-])")


def mask_email(value: str | None) -> str:
    if not value or "@" not in value:
        return "-" if not value else "***"
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str | None) -> str:
    if not value:
        return "-"
    return f"{value[:4]}***{value[-2:]}" if len(value) > 6 else "***"


def scrub(text: str) -> str:
    """Mask anything in free text that looks like an email address or a phone number."""
    text = _EMAIL_RE.sub(lambda m: f"{m[1]}***@{m[2]}", text)
    return _PHONE_RE.sub(lambda m: f"{m[1]}***{m[2]}", text)


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _scrub_value(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (bytes, bytearray)):
        return scrub(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    return value


class _ScrubFilter(logging.Filter):
    """Masks contact data in everything a record carries to the output: the message with its
    arguments (of any type), every `extra=` field, the exception and the stack (issue #8)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI copy of the message
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = scrub(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_FIELDS:
                record.__dict__[key] = _scrub_value(value)
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None  # formatters print exc_text instead
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def configure(service: str, *, fmt: str = "auto", level: str = "INFO") -> None:
    """`fmt`: "json" (one object per line, for machines), "console" (for people), or
    "auto": console on a terminal, JSON otherwise (containers, files, pipes)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service:8} %(levelname)-7s %(message)s"))
    handler.addFilter(_ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "uvicorn.access", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
