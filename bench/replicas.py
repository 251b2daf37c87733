"""`python -m bench --replicas`: notify with 1, 2 and 3 replicas (processes) sharing one
PostgreSQL database and the same queues, as in compose or on several machines. For each
count: a fan-out of one notice to N residents on email and SMS, and an ingest of M
noticeboard-only notices. Writes bench/replicas.json (docs/scaling.md reads it).

Replicas split the work through the broker (competing consumers on the quorum queues) and
through the database (deliveries claimed with FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika

from .procs import PgDatabase, Service, Vhost, base_env, free_port, machine
from .run import HERE, Bench
from .sinks import Sink


async def one_count(bench: Bench, replicas: int, residents: int, notices: int) -> dict[str, Any]:
    from shared.migrations import upgrade_async

    with Vhost() as vhost:
        async with PgDatabase() as db:
            await upgrade_async("notify", db.url)
            await bench.seed(db.url, "primskovo", residents, f"r{replicas}", replicas)
            env = base_env(
                vhost.url,
                bench.tmp / f"replicas-{replicas}",
                {**bench.smtp.settings_env(), **bench.sms.settings_env(), "KRANJ_NOTIFY_DATABASE_URL": db.url},
            )
            (bench.tmp / f"replicas-{replicas}").mkdir(parents=True, exist_ok=True)
            services = [Service("notify", env, bench.tmp) for _ in range(replicas)]
            for s in services:
                s.start()
            try:
                for s in services:
                    await s.ready()
                await asyncio.sleep(2)
                connection = await aio_pika.connect(vhost.url)
                async with connection:
                    channel = await connection.channel(publisher_confirms=True)
                    exchange = await channel.get_exchange("kranj")
                    fanout = await bench.fanout(
                        exchange, "primskovo", residents, timeout=600, notify_pids=[s.pid for s in services]
                    )
                    ingest = await bench.ingest(exchange, db.url, notices, timeout=600)
                rss = [round(s.rss_mb(), 1) for s in services]
            finally:
                for s in services:
                    s.stop()
    return {"replicas": replicas, "fanout": fanout, "ingest": ingest, "rss_mb": rss}


async def _ceilings(bench: Bench, n: int) -> dict[str, float]:
    """The plain clients' ceilings of the main run, on a vhost of their own."""
    with Vhost() as vhost:
        return {
            "broker_messages_per_second": round(await bench.broker_ceiling(vhost.url, n), 1),
            "smtp_emails_per_second": round(
                await bench.smtp_ceiling(n // 2, int(os.environ.get("BENCH_SMTP_CONNECTIONS", "16"))), 1
            ),
        }


async def main(args: argparse.Namespace) -> None:
    residents = 1000 if args.quick else 3000
    notices = 2000 if args.quick else 5000
    bench = Bench(args)
    ctx = mp.get_context("spawn")
    bench.marks = ctx.Queue()
    bench.smtp = Sink("smtp", free_port(), bench.marks)
    bench.sms = Sink("sms", free_port(), bench.marks)
    results: dict[str, Any] = {
        "machine": machine(),
        "run": {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": "PostgreSQL (one database shared by the replicas)",
            "residents": residents,
            "notices": notices,
            "smtp_connections_per_replica": int(os.environ.get("BENCH_SMTP_CONNECTIONS", "16")),
            "rate_limits": "lifted (100000/s per process)",
        },
        "counts": [],
    }
    bench.smtp.start()
    bench.sms.start()
    try:
        # The ceilings of this run, before and after the counts (the machine drifts): the
        # shares below use their mean.
        ceilings = [await _ceilings(bench, 3000 if args.quick else 10_000)]
        for replicas in (1, 2, 3):
            print(f"{replicas} notify replica(s) ...", flush=True)
            started = time.perf_counter()
            row = await one_count(bench, replicas, residents, notices)
            row["wall_seconds"] = round(time.perf_counter() - started, 1)
            print(f"  {row}", flush=True)
            results["counts"].append(row)
        ceilings.append(await _ceilings(bench, 3000 if args.quick else 10_000))
        results["ceilings"] = {
            "runs": ceilings,
            **{key: round(sum(c[key] for c in ceilings) / len(ceilings), 1) for key in ceilings[0]},
        }
        for row in results["counts"]:
            row["shares"] = {
                "email": round(row["fanout"]["email_per_second"] / results["ceilings"]["smtp_emails_per_second"], 3),
                "ingest": round(row["ingest"]["per_second"] / results["ceilings"]["broker_messages_per_second"], 3),
            }
    finally:
        bench.smtp.stop()
        bench.sms.stop()
        shutil.rmtree(bench.tmp, ignore_errors=True)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = HERE / "replicas.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    c = results["ceilings"]
    print(f"ceilings (mean of before and after): broker {c['broker_messages_per_second']:.0f} msg/s, "
          f"SMTP {c['smtp_emails_per_second']:.0f} emails/s")  # fmt: skip
    print(f"{'replicas':>8} {'email/s':>9} {'SMS/s':>9} {'all/s':>9} {'ingest/s':>9} {'email %':>8} {'ingest %':>9}")
    for row in results["counts"]:
        f, i, sh = row["fanout"], row["ingest"], row["shares"]
        print(
            f"{row['replicas']:>8} {f['email_per_second']:>9.0f} {f['sms_per_second']:>9.0f} "
            f"{f['all_deliveries_per_second']:>9.0f} {i['per_second']:>9.0f} {sh['email']:>8.0%} {sh['ingest']:>9.0%}"
        )
    print(f"\nwritten: {out}")
