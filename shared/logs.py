"""Structured logging: one JSON object per line, contact data never in full."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_PHONE_RE = re.compile(r"(\+?\d{3})[\d ]{4,}(\d{2})")


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


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI copy of the message
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if record.args:
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)  # type: ignore[assignment]
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
