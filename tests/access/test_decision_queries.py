"""The badge-to-unlock path stays a fixed, small number of queries, however much history there is."""

from __future__ import annotations

from datetime import timedelta

from access.actions import present_badge
from tests.conftest import WEDNESDAY_10AM, World
from tests.flows import give_back, take


def test_a_granted_take_costs_a_fixed_number_of_queries(
    world: World, django_assert_max_num_queries
) -> None:
    # History must not make the decision slower.
    for day in range(5):
        when = WEDNESDAY_10AM - timedelta(days=7 * (day + 1))
        take(world.bank, world.ana_badge.uid, when)
        give_back(world.bank, world.ana_badge.uid, when + timedelta(hours=1))

    # The decision reads a one-UID snapshot (access.snapshot_builder): a query per part, so
    # it costs the same however many badges, rules, shifts and loans there are.
    with django_assert_max_num_queries(20) as captured:
        result = present_badge(world.bank, world.ana_badge.uid, now=WEDNESDAY_10AM)

    assert result.granted
    print(f"granted take: {len(captured)} queries")


def test_a_denial_costs_few_queries(world: World, django_assert_max_num_queries) -> None:
    # An unknown badge is decided by the same core: the slots and asset types are read too.
    with django_assert_max_num_queries(10):
        result = present_badge(world.bank, "DEADBEEF", now=WEDNESDAY_10AM)
    assert not result.granted
