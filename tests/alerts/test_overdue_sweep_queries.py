"""The overdue sweep reads with a fixed number of queries however much history and how many
open items and alerts there are."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext

from assets.models import Asset, Checkout
from lockerhub.alerts.rules import sweep_overdue
from tests.conftest import WEDNESDAY_10AM, World

NOW = WEDNESDAY_10AM
STEADY_MAX_QUERIES = 4  # the ids to resolve, to raise, and per rung above the first to climb


def grow(world: World, n: int) -> None:
    """``n`` more of everything: returned history, items out and not due, items overdue."""
    start = Asset.objects.count()
    assets = Asset.objects.bulk_create(
        Asset(asset_tag=f"Q-{start + i:05d}", asset_type=world.scanner) for i in range(3 * n)
    )
    slot = world.slot(6)
    rows = []
    for i, asset in enumerate(assets):
        kind = i % 3
        taken = NOW - timedelta(days=i % 20, hours=8)
        rows.append(
            Checkout(
                asset=asset,
                employee=world.ana,
                slot_out=slot,
                reserved_at=taken,
                taken_at=taken,
                status=Checkout.Status.RETURNED if kind == 0 else Checkout.Status.ACTIVE,
                returned_at=taken + timedelta(hours=1) if kind == 0 else None,
                # Overdue by up to three hours, so alerts sit on every rung of the ladder.
                due_at=NOW + timedelta(hours=2) if kind == 1 else NOW - timedelta(minutes=i % 180),
            )
        )
    Checkout.objects.bulk_create(rows)


def steady_sweep_queries(world: World) -> int:
    sweep_overdue(NOW)  # raise and escalate what is new
    with CaptureQueriesContext(connection) as queries:
        result = sweep_overdue(NOW)
    assert result.as_dict() == {"raised": 0, "escalated": 0, "resolved": 0}
    return len(queries)


def test_overdue_sweep_query_count_does_not_grow_with_data(
    world: World, time_machine, django_assert_max_num_queries
) -> None:
    time_machine.move_to(NOW, tick=False)
    grow(world, 5)
    small = steady_sweep_queries(world)
    grow(world, 100)
    large = steady_sweep_queries(world)

    assert small == large
    with django_assert_max_num_queries(STEADY_MAX_QUERIES):
        sweep_overdue(NOW)


def test_each_new_overdue_item_costs_the_same_few_queries(world: World, time_machine) -> None:
    time_machine.move_to(NOW, tick=False)
    grow(world, 1)
    with CaptureQueriesContext(connection) as one:
        assert sweep_overdue(NOW).raised == 1
    steady = steady_sweep_queries(world)
    grow(world, 10)
    with CaptureQueriesContext(connection) as ten:
        assert sweep_overdue(NOW).raised == 10
    per_alert = len(one) - steady
    assert per_alert <= 13  # 7 statements, 6 savepoint statements (the test runs in a transaction)
    assert len(ten) - steady <= 10 * per_alert
