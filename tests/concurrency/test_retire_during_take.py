"""A device retired while a tap waits for its slot is not handed out."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from access.actions import TapResult, present_badge
from assets.models import Asset
from devices.models import Slot
from tests.conftest import WEDNESDAY_10AM, World

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row-lock races need PostgreSQL (set DATABASE_URL)",
    ),
]


def test_a_tap_waiting_on_a_slot_being_retired_takes_another_device(live_db, world: World) -> None:
    best = Slot.objects.dispensable(world.bank, [world.scanner.pk]).select_related("asset")[0]
    retired = best.asset
    locked = threading.Event()
    tap_sent = threading.Event()
    results: list[TapResult] = []
    errors: list[BaseException] = []

    def retire() -> None:
        # What retiring does, held open: the slot is locked, then its device retired.
        try:
            with transaction.atomic():
                list(Slot.objects.select_for_update().filter(pk=best.pk).values_list("pk"))
                Asset.objects.filter(pk=retired.pk).update(status=Asset.Status.RETIRED)
                locked.set()
                tap_sent.wait(timeout=10)
                # Give the tap time to choose this slot and queue on its lock.
                threading.Event().wait(0.5)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def tap() -> None:
        try:
            locked.wait(timeout=10)
            tap_sent.set()
            results.append(present_badge(world.bank, world.ana_badge.uid, now=WEDNESDAY_10AM))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=retire), threading.Thread(target=tap)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    [result] = results
    assert result.granted, result.message
    assert result.reservation.checkout.asset_id != retired.pk
    assert Asset.objects.get(pk=retired.pk).status == Asset.Status.RETIRED
