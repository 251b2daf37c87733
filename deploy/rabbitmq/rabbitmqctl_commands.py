#!/usr/bin/env python3
"""deploy/rabbitmq/definitions.json as `rabbitmqctl` commands, for one vhost.

Compose imports the whole file (rabbitmq-init). Where it is not imported — a local broker
of `make run`, a test's own vhost — the same users, permissions, topic permissions and
policies can be applied to any vhost with these commands, made from the same file:

    python3 deploy/rabbitmq/rabbitmqctl_commands.py policies              # print them (vhost /)
    python3 deploy/rabbitmq/rabbitmqctl_commands.py policies --vhost / --run

`policies` is what a local broker needs (the bound of `kranj.dead`, the quorum queues'
delivery limit); `access` prints the users' permissions and topic permissions (users are
created with `rabbitmqctl add_user`, passwords never come from here). Python 3 standard
library only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def policy_commands(definitions: Mapping[str, Any], vhost: str) -> list[list[str]]:
    """`rabbitmqctl set_policy` for every policy of the file, on `vhost`."""
    return [
        [
            "set_policy",
            "-p",
            vhost,
            "--priority",
            str(policy.get("priority", 0)),
            "--apply-to",
            policy.get("apply-to", "all"),
            policy["name"],
            policy["pattern"],
            json.dumps(policy["definition"], separators=(",", ":")),
        ]
        for policy in definitions.get("policies", [])
    ]


def access_commands(
    definitions: Mapping[str, Any],
    vhost: str,
    users: Iterable[str] | None = None,
    rename: Callable[[str], str] = lambda name: name,
) -> list[list[str]]:
    """`set_permissions` and `set_topic_permissions` of `users` (default: every user of the
    file), on `vhost`; `rename` maps a user of the file to the broker user that gets them."""
    wanted = None if users is None else set(users)
    out: list[list[str]] = []
    for p in definitions.get("permissions", []):
        if wanted is None or p["user"] in wanted:
            out.append(["set_permissions", "-p", vhost, rename(p["user"]), p["configure"], p["write"], p["read"]])
    for p in definitions.get("topic_permissions", []):
        if wanted is None or p["user"] in wanted:
            out.append(
                ["set_topic_permissions", "-p", vhost, rename(p["user"]), p["exchange"], p["write"], p["read"]]
            )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("policies", "access"))
    parser.add_argument("--vhost", default="/", help="the vhost to apply them to (default /)")
    parser.add_argument("--definitions", type=Path, default=HERE / "definitions.json")
    parser.add_argument("--run", action="store_true", help="run them with rabbitmqctl instead of printing them")
    args = parser.parse_args(argv[1:])
    definitions = json.loads(args.definitions.read_text(encoding="utf-8"))
    commands = (policy_commands if args.what == "policies" else access_commands)(definitions, args.vhost)
    for command in commands:
        if args.run:
            subprocess.run(["rabbitmqctl", *command], check=True)
        else:
            print(shlex.join(["rabbitmqctl", *command]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
