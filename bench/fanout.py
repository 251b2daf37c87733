"""Fan-out figure for the foundation: one notice to N residents of one KS (email + SMS),
measured from the outside publish to the last message at a real SMTP server and a real
HTTP SMS gateway. Prints a line per N; not part of `make test`.

    .venv/bin/python bench/fanout.py 100 1000
    BENCH_DEFAULT_RATES=1 .venv/bin/python bench/fanout.py 100   # with the default rate limits
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import SmsGateway, SmtpSink, make_settings, vhost_url  # noqa: E402

from services.notify import service  # noqa: E402
from services.notify.app import create_app  # noqa: E402

RATES = {} if os.environ.get("BENCH_DEFAULT_RATES") == "1" else {"sms_per_second": 100_000, "email_per_second": 100_000}


async def run(n: int) -> None:
    vhost = f"kranj-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True)
    smtp, sms = SmtpSink(), SmsGateway()
    smtp.start()
    sms.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = make_settings(
                Path(tmp),
                vhost_url(vhost),
                log_level="WARNING",
                **smtp.settings(),
                **sms.settings(),
                **RATES,  # the per-channel rate limits are lifted unless BENCH_DEFAULT_RATES=1
            )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                db = app.state.ctx.db
                for i in range(n):
                    await service.add_subscriber(
                        db, service.SubscriberIn(email=f"r{i}@example.si", phone=f"+3864{i:07d}", ks=["primskovo"])
                    )
                body = {
                    "specversion": "1.0",
                    "id": str(uuid.uuid4()),
                    "source": "/bench",
                    "type": "si.kranj.notify.notice.requested.v1",
                    "data": {"title": "Izklop vode", "body": "Jutri ne bo vode.", "ks": ["primskovo"]},
                }
                connection = await aio_pika.connect(vhost_url(vhost))
                async with connection:
                    exchange = await (await connection.channel()).get_exchange("kranj")
                    started = time.perf_counter()
                    await exchange.publish(aio_pika.Message(json.dumps(body).encode()), "notify.notice.requested")
                    while len(smtp.messages) < n or len(sms.accepted) < n:
                        await asyncio.sleep(0.01)
                    elapsed = time.perf_counter() - started
                print(
                    f"{n:>6} residents: {2 * n} messages in {elapsed:6.2f} s "
                    f"({2 * n / elapsed:7.1f} deliveries/s; email and SMS at once)"
                )
    finally:
        smtp.stop()
        sms.stop()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


if __name__ == "__main__":
    for size in [int(a) for a in sys.argv[1:]] or [100]:
        asyncio.run(run(size))
