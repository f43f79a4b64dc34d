"""Fifty people tap at once for the last charged scanner: exactly one gets it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections

from access.actions import TapResult, issue_badge, present_badge
from access.models import AccessEvent, Reason, ShiftAssignment
from assets.models import Checkout, Reservation
from devices.models import Slot
from lockerhub.audit import SYSTEM, verify_chain
from tests.conftest import WEDNESDAY_10AM, World, make_employee

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row-lock races need PostgreSQL (set DATABASE_URL)",
    ),
]

CONTENDERS = 50


def test_fifty_taps_for_the_last_charged_scanner_have_one_winner(live_db, world: World) -> None:
    # Leave exactly one dispensable scanner at the bank.
    Slot.objects.filter(bank=world.bank).exclude(number=1).update(out_of_service=True)
    uids = []
    for n in range(CONTENDERS):
        person = make_employee(f"R{n:03d}", f"Racer{n}", world.department)
        ShiftAssignment.objects.create(
            employee=person, shift=world.day_shift, valid_from=WEDNESDAY_10AM.date()
        )
        uid = f"7A{n:06X}"
        issue_badge(person, uid, actor=SYSTEM, valid_from=WEDNESDAY_10AM - timedelta(days=1))
        uids.append(uid)

    barrier = threading.Barrier(CONTENDERS)
    results: list[TapResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def tap(uid: str) -> None:
        try:
            barrier.wait(timeout=30)
            result = present_badge(world.bank, uid, now=WEDNESDAY_10AM)
            with lock:
                results.append(result)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tap, args=(uid,)) for uid in uids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(results) == CONTENDERS
    winners = [r for r in results if r.granted]
    assert len(winners) == 1
    assert {r.reason for r in results if not r.granted} == {Reason.NO_ASSET_AVAILABLE}
    # Nothing half-written: one reservation, one checkout, one access event per tap, an intact chain.
    assert Reservation.objects.count() == 1
    assert Checkout.objects.count() == 1
    assert Checkout.objects.get().employee_id == winners[0].employee.pk
    assert AccessEvent.objects.count() == CONTENDERS
    assert AccessEvent.objects.filter(granted=True).count() == 1
    assert list(verify_chain()) == []
