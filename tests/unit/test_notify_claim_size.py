"""How many deliveries one claim of notify's delivery worker takes (services/notify/delivery.py):
email BATCH; SMS about BATCH_SECONDS of sending at KRANJ_SMS_PER_SECOND, between BATCH and
BATCH_MAX; what a caller gives (tests) for both."""

from __future__ import annotations

import pytest

from services.notify.delivery import BATCH, BATCH_MAX, DeliveryWorker, sms_batch
from services.notify.render import Renderer
from services.notify.transports import email_transport, sms_transport
from shared.settings import Settings


@pytest.mark.parametrize(
    ("per_second", "claimed"),
    [(10, BATCH), (1, BATCH), (20, BATCH), (40, 200), (60.5, 302), (100, BATCH_MAX), (100_000, BATCH_MAX)],
)
def test_an_sms_claim_holds_a_few_seconds_of_sending(per_second: float, claimed: int) -> None:
    assert sms_batch(per_second) == claimed
    assert BATCH <= claimed <= BATCH_MAX


def worker(tmp_path, batch: int | None = None, **overrides: object) -> DeliveryWorker:
    settings = Settings(data_dir=tmp_path, secret_key="k" * 32, **overrides)
    return DeliveryWorker(
        settings, None, Renderer(settings), email_transport(settings), sms_transport(settings), batch=batch
    )  # type: ignore[arg-type]


def test_the_worker_claims_by_channel(tmp_path) -> None:
    assert worker(tmp_path).batches == {"email": BATCH, "sms": BATCH}  # the default 10 SMS/s
    assert worker(tmp_path, sms_per_second=100, email_per_second=1000).batches == {"email": BATCH, "sms": BATCH_MAX}
    assert worker(tmp_path, batch=4, sms_per_second=100).batches == {"email": 4, "sms": 4}
