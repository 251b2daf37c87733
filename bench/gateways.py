"""`python -m bench --gateways`: notify's SMS path against three kinds of gateway (issue 20, §3).

For each gateway — `keepalive` (uvicorn, connections kept), `close` (Python's threading HTTP
server, HTTP/1.0: every connection closed after its answer) and `slow` (keep-alive, each
answer after 100 ms, as a provider across the internet) — in its own process:

1. a plain aiohttp client posts `n` SMS, `concurrency` at a time (the ceiling);
2. notify's delivery worker (the real one: claims from SQLite, fits the text with each
   subscriber's own signed unsubscribe link, as a city-wide notice's SMS carry it, sends through
   its `GatewaySms` transport with the adaptive window capped at the same `concurrency`,
   records each outcome) sends `n` SMS deliveries to the same gateway.

(1) and (2) alternate `ROUNDS` times (BENCH_GATEWAY_ROUNDS, default 3), so that both meet the
machine as it is in the same seconds: on a shared 2-core machine one plain run and the
notify run after it differed by up to a third from the pair of the next minute. Each pair's
share is (2) / (1); the figure of the run is the median of its pairs (each pair is kept in
`rounds`). The target is a median share of at least 0.6 on each kind. Written to
bench/gateways.json; the README and docs/scaling.md carry the last figures.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

from .procs import free_port, machine
from .sinks import SMS_TOKEN, Sink, plain_sms_client

HERE = Path(__file__).parent
KINDS = ("keepalive", "close", "slow")
LABELS = {
    "keepalive": "keeping connections alive (uvicorn)",
    "close": "closing every connection (HTTP/1.0)",
    "slow": "answering after 100 ms",
}
TEXT = "Jutri od 8. do 12. ure ne bo vode v KS Primskovo. Komunala Kranj"


def facts_v1() -> bool:
    """As `make bench` measures notify (bench/procs.py): the deprecated per-delivery v1 events
    off, where the platform is heading; BENCH_DELIVERY_FACTS_V1=1 measures them too."""
    return os.environ.get("BENCH_DELIVERY_FACTS_V1") == "1"


ROUNDS = int(os.environ.get("BENCH_GATEWAY_ROUNDS", "3"))


async def notify_worker(sink: Sink, n: int, concurrency: int, tmp: Path, tag: int = 0) -> tuple[float, int, float]:
    """SMS per second, the window's peak, and ms of this process's CPU per SMS while sending."""
    from services.notify.delivery import DeliveryWorker
    from services.notify.models import Delivery, Notice
    from services.notify.render import Renderer
    from services.notify.transports import email_transport, sms_transport
    from services.notify.window import AdaptiveWindow
    from shared.db import Database
    from shared.migrations import upgrade_async
    from shared.settings import Settings

    url = f"sqlite+aiosqlite:///{(tmp / f'notify-{sink.port}-{tag}.db').resolve()}"
    await upgrade_async("notify", url)
    settings = Settings(
        data_dir=tmp, notify_database_url=url, sms_gateway_url=sink.url, sms_gateway_token=SMS_TOKEN,
        sms_per_second=100_000, quiet_hours="off", secret_key="bench-secret-key-0123456789abcdef",
        delivery_facts_v1=facts_v1(),
    )  # fmt: skip
    db = Database(url)
    try:
        notice = Notice(source="/komunala-kranj/outages", source_id="n1", title="Izklop vode", body=TEXT)
        async with db.session() as s:
            s.add(notice)
            await s.commit()
            # Each to a subscriber, as a city-wide notice goes: every SMS carries its resident's own
            # signed unsubscribe link (a personal message, with no subscriber, carries none).
            s.add_all(
                Delivery(
                    notice_id=notice.id, subscriber_id=str(uuid.uuid4()), channel="sms", address=f"+3864012{i:04d}"
                )
                for i in range(n)
            )
            await s.commit()
        window = AdaptiveWindow(ceiling=concurrency)
        # Claims as notify's own worker claims at this KRANJ_SMS_PER_SECOND (services.notify.delivery.sms_batch)
        worker = DeliveryWorker(settings, db, Renderer(settings), email_transport(settings), sms_transport(settings),
                                sms_window=window)  # fmt: skip
        base = sink.accepted
        started, cpu = time.perf_counter(), time.process_time()
        try:
            while await worker.run_once("sms"):
                pass
        finally:
            await worker.sms.close()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert sink.accepted - base == n, f"{sink.accepted - base} of {n} SMS reached the gateway"
        return n / elapsed, window.peak, 1000 * cpu / n
    finally:
        await db.dispose()


async def run(n: int, concurrency: int) -> dict[str, Any]:
    # As in a notify process, whose started heap is frozen (shared.web.freeze_heap): what this
    # process holds by now is moved out of the collector's reach, for both clients alike.
    import services.notify.delivery  # noqa: F401 - imported before the freeze, as a started service has
    from shared.web import freeze_heap

    freeze_heap()
    tmp = Path(tempfile.mkdtemp(prefix="kranj-bench-gateways-"))
    results: dict[str, Any] = {
        "machine": machine(), "sms": n, "concurrency": concurrency, "delivery_facts_v1": facts_v1(), "rounds": ROUNDS,
        "kinds": {},
    }  # fmt: skip
    marks = mp.get_context("spawn").Queue()  # unused here; the sinks report latency marks to it
    try:
        for kind in KINDS:
            sink = Sink("sms", free_port(), marks, mode=kind)
            sink.start()
            try:
                await plain_sms_client(sink.url, min(n, 200), concurrency, TEXT)  # warm up both ends
                rounds = []
                for tag in range(ROUNDS):  # plain, notify, plain, notify, ...: the same seconds for both
                    cpu = time.process_time()
                    plain = await plain_sms_client(sink.url, n, concurrency, TEXT)
                    plain_cpu = 1000 * (time.process_time() - cpu) / n
                    notify, peak, notify_cpu = await notify_worker(sink, n, concurrency, tmp, tag)
                    rounds.append(
                        {
                            "plain_aiohttp_per_second": round(plain, 1),
                            "notify_per_second": round(notify, 1),
                            "share": round(notify / plain, 3),
                            "notify_window_peak": peak,
                            # CPU of this process per SMS: the plain client's, and notify's delivery
                            # worker's (claiming, fitting, the request, recording the outcome)
                            "plain_cpu_ms_per_sms": round(plain_cpu, 4),
                            "notify_cpu_ms_per_sms": round(notify_cpu, 4),
                        }
                    )
            finally:
                sink.stop()
            # The run's figures: each the median over the rounds (the share, of the pairs' shares).
            results["kinds"][kind] = {key: median(r[key] for r in rounds) for key in rounds[0]}
            results["kinds"][kind]["share_of_each_round"] = [r["share"] for r in rounds]
            results["kinds"][kind]["rounds"] = rounds
            print(f"  {kind}: { {k: v for k, v in results['kinds'][kind].items() if k != 'rounds'} }", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["target_share_min_0.60"] = all(k["share"] >= 0.6 for k in results["kinds"].values())
    return results


def write(results: dict[str, Any]) -> Path:
    out = HERE / "gateways.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return out


def report(results: dict[str, Any]) -> str:
    lines = [
        f"SMS per second, notify vs a plain aiohttp client ({results['sms']} SMS, {results['concurrency']} at a time;"
        f" medians of {results.get('rounds', 1)} alternating rounds):"
    ]
    for kind, k in results["kinds"].items():
        lines.append(
            f"  {kind:<10} plain {k['plain_aiohttp_per_second']:>8.0f}/s  notify {k['notify_per_second']:>8.0f}/s"
            f"  share {k['share']:.2f}  (window peak {k['notify_window_peak']}; CPU per SMS: plain"
            f" {k['plain_cpu_ms_per_sms']:.3f} ms, notify {k['notify_cpu_ms_per_sms']:.3f} ms;"
            f" each round's share {', '.join(f'{x:.2f}' for x in k.get('share_of_each_round', [k['share']]))})"
        )
    lines.append(f"target (share >= 0.6 on each): {'met' if results['target_share_min_0.60'] else 'MISSED'}")
    return "\n".join(lines)


def main(args: Any) -> None:
    results = asyncio.run(run(1000 if args.quick else 4000, concurrency=64))
    out = write(results)
    print("\n" + report(results) + f"\nwritten: {out}")
