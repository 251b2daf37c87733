"""Booking and notify together over the real broker: the requester of an approved and of a
rejected request gets an email on a real SMTP server, written from the booking.* data."""

from __future__ import annotations

import httpx
import pytest
from booking_helpers import booking_body, future_day
from support.settings import TEST_ADMIN_TOKEN, make_settings, wait_until

from services.booking.app import create_app as create_booking
from services.notify.app import create_app as create_notify

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


async def test_approval_and_rejection_reach_a_real_smtp_server(tmp_path, amqp_url, smtp_server):
    settings = make_settings(tmp_path, amqp_url, **smtp_server.settings())
    booking, notify = create_booking(settings), create_notify(settings)
    async with notify.router.lifespan_context(notify), booking.router.lifespan_context(booking):
        transport = httpx.ASGITransport(app=booking)
        async with httpx.AsyncClient(transport=transport, base_url="http://booking.test") as client:
            day = future_day(3)
            first = await client.post("/api/v1/bookings", json=booking_body(day, email="ana@example.si", phone=None))
            second = await client.post(
                "/api/v1/bookings", json=booking_body(day, "10:00", "12:00", email="bor@example.si", phone=None)
            )
            assert first.status_code == second.status_code == 201
            approved = await client.post(f"/api/v1/bookings/{first.json()['id']}/approve", headers=ADMIN)
            rejected = await client.post(
                f"/api/v1/bookings/{second.json()['id']}/reject", json={"reason": "Občni zbor KS."}, headers=ADMIN
            )
            assert approved.status_code == rejected.status_code == 200

            ana = await wait_until(lambda: len([m for m in smtp_server.messages if "ana@example.si" in m.rcpt_tos]) >= 2,
                                   timeout=30, message="two emails to the approved requester")  # fmt: skip
            bor = await wait_until(lambda: len([m for m in smtp_server.messages if "bor@example.si" in m.rcpt_tos]) >= 2,
                                   timeout=30, message="two emails to the rejected requester")  # fmt: skip
            assert ana and bor
            to_ana = [m.part("text/plain") or "" for m in smtp_server.messages if "ana@example.si" in m.rcpt_tos]
            to_bor = [m.part("text/plain") or "" for m in smtp_server.messages if "bor@example.si" in m.rcpt_tos]
            assert any("Dom KS Primskovo" in text for text in to_ana)
            assert any("Občni zbor KS." in text for text in to_bor)
