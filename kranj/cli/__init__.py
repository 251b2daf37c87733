"""`kranj`: the ops command line of Kranj ZA vse (CONTRACT.md, "Commands").

Every command builds `Settings()` from the environment (`KRANJ_*`), so it acts on the
same broker and databases as the services started with that environment.

    kranj up                      all four services, supervised (what `make run` starts)
    kranj run <service>           one service in the foreground (what a container runs)
    kranj gateway [--nginx|--check]  the front door's route table; the compose nginx config
    kranj db upgrade              migrations of every service
    kranj subscriber add|import|erase
    kranj dlq list|replay         the dead letters in `kranj.dead`
    kranj queues migrate          existing queues to the arguments the code declares (classic -> quorum)
    kranj status                  services, queues, dead letters, unsent outbox rows
    kranj token create|list|revoke staff API tokens (stored hashed, revocable)
    kranj staff add|passwd|disable|enable|list   staff accounts for the /login page
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import accounts, db, dlq, erase, queues, status, subscribers, up
from .common import err, fail, out

app = typer.Typer(
    name="kranj",
    help="Kranj ZA vse — the ops command line. Settings come from KRANJ_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # never print settings (secrets) in a traceback
)
app.add_typer(db.db_app, name="db")
app.add_typer(subscribers.subscriber_app, name="subscriber")
app.add_typer(dlq.dlq_app, name="dlq")
app.add_typer(queues.queues_app, name="queues")
app.add_typer(accounts.token_app, name="token")
app.add_typer(accounts.staff_app, name="staff")
app.command()(up.up)
app.command()(up.run)
app.command()(up.gateway)
app.command()(status.status)

__all__ = ["app", "main", "erase"]


def main() -> None:
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:  # a bad KRANJ_* setting: one clear line, not a traceback
        from shared.settings import settings_problem

        err(f"kranj: invalid configuration: {settings_problem(exc)}")
        raise SystemExit(2) from None


# --------------------------------------------------------------------------------------
# kranj docs
# --------------------------------------------------------------------------------------
@app.command()
def docs(
    check: Annotated[
        bool, typer.Option("--check", help="Only check that the files in docs/ are current; exit 1 if not.")
    ] = False,
) -> None:
    """Write each service's AsyncAPI and OpenAPI document and the combined AsyncAPI document
    (docs/asyncapi/<service>.json, docs/asyncapi/kranj.json, docs/openapi/<service>.json)."""
    from kranj import docs as documents

    if check:
        outdated = documents.stale()
        for relative in outdated:
            err(f"kranj: docs/{relative} is not current")
        if outdated:
            raise fail("kranj: run `kranj docs` and commit the files")
        out("kranj: the documents in docs/ are current.")
        return
    written = documents.write_all()
    for path in written:
        out(f"wrote {path.relative_to(documents.DOCS_DIR.parent)}")
    out(f"{len(written)} document(s) changed.")


if __name__ == "__main__":  # pragma: no cover
    main()
