"""One person taps at two banks at the same instant with a limit of one device: one door opens."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from access.actions import TapResult, present_badge
from access.models import Reason
from assets.models import Checkout
from tests.conftest import WEDNESDAY_10AM, World

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row-lock races need PostgreSQL (set DATABASE_URL)",
    ),
]

ROUNDS = 10


def test_taps_of_one_person_at_two_banks_never_exceed_the_limit(live_db, world: World) -> None:
    assert world.rule.max_concurrent == 1
    for _ in range(ROUNDS):
        barrier = threading.Barrier(2)
        results: list[TapResult] = []
        errors: list[BaseException] = []

        def tap(bank, results=results, errors=errors, barrier=barrier) -> None:
            try:
                barrier.wait(timeout=30)
                results.append(present_badge(bank, world.ana_badge.uid, now=WEDNESDAY_10AM))
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=tap, args=(b,)) for b in (world.bank, world.other_bank)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert errors == []
        assert sorted(r.granted for r in results) == [False, True]
        assert [r.reason for r in results if not r.granted] == [Reason.LIMIT_REACHED]
        assert Checkout.objects.open().filter(employee=world.ana).count() == 1
        # Start the next round from nothing held.
        Checkout.objects.all().delete()
