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

    with django_assert_max_num_queries(18) as captured:
        result = present_badge(world.bank, world.ana_badge.uid, now=WEDNESDAY_10AM)

    assert result.granted
    print(f"granted take: {len(captured)} queries")


def test_a_denial_costs_few_queries(world: World, django_assert_max_num_queries) -> None:
    with django_assert_max_num_queries(8):
        result = present_badge(world.bank, "DEADBEEF", now=WEDNESDAY_10AM)
    assert not result.granted
