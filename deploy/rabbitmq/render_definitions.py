#!/usr/bin/env python3
"""Fill in the broker users' passwords of deploy/rabbitmq/definitions.json.

The checked-in definitions name the users (one per service, one per outside system) but
hold no password: a password hash in the repository would be a shared secret. This script
(Python 3 standard library only, so it runs in the rabbitmq management image as well)
writes a copy in which each user has a `password_hash` made from an environment variable:

    user kranj-events   ->  RABBITMQ_PASSWORD_KRANJ_EVENTS
    user kranj-outside  ->  RABBITMQ_PASSWORD_KRANJ_OUTSIDE
    (upper case, every character that is not a letter or digit becomes "_")

    python3 render_definitions.py definitions.json /tmp/definitions.json
    rabbitmqadmin ... import /tmp/definitions.json       (or: rabbitmqctl import_definitions)

A user whose variable is unset or empty is an error (exit 2), so a deployment never runs
with a user that cannot log in or, worse, with a forgotten default. The hash is RabbitMQ's
default `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password)), with a
random 4-byte salt — the same as `rabbitmqctl add_user` makes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from typing import Any

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


def password_variable(user: str) -> str:
    return "RABBITMQ_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", user).upper()


def password_hash(password: str, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def render(definitions: Mapping[str, Any], passwords: Mapping[str, str]) -> dict[str, Any]:
    """A copy of `definitions` with a password hash for every user; `passwords` maps
    user name -> password. Raises KeyError naming the variable of a user without one."""
    out = json.loads(json.dumps(definitions))
    for user in out.get("users", []):
        password = passwords.get(user["name"])
        if not password:
            raise KeyError(f"no password for broker user {user['name']!r}: set {password_variable(user['name'])}")
        user.pop("password", None)
        user["password_hash"] = password_hash(password)
        user["hashing_algorithm"] = HASHING_ALGORITHM
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} DEFINITIONS.json OUT.json", file=sys.stderr)
        return 64
    with open(argv[1], encoding="utf-8") as f:
        definitions = json.load(f)
    passwords = {u["name"]: os.environ.get(password_variable(u["name"]), "") for u in definitions.get("users", [])}
    try:
        rendered = render(definitions, passwords)
    except KeyError as exc:
        print(f"render_definitions: {exc.args[0]}", file=sys.stderr)
        return 2
    fd = os.open(argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(rendered, f, indent=2)
    print(f"render_definitions: {len(rendered.get('users', []))} users with passwords -> {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
