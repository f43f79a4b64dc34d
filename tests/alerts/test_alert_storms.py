"""No alert storms: one alert per cause, and a rate limit per rule and subject."""

from __future__ import annotations

from datetime import timedelta

from lockerhub import actions
from lockerhub.models import Alert
from tests.conftest import WEDNESDAY_10AM, World

NOW = WEDNESDAY_10AM


def forced(world: World, n: int, at) -> tuple[Alert | None, bool]:
    return actions.raise_alert(
        Alert.Kind.DOOR_FORCED,
        f"door-forced:{world.bank.code}:5:{n}",
        "Door 5 forced",
        now=at,
        bank=world.bank,
        slot=world.slot(5),
        site_id=world.site.pk,
    )


def test_one_open_alert_per_cause(world: World) -> None:
    first, created = forced(world, 1, NOW)
    again, created_again = forced(world, 1, NOW + timedelta(seconds=5))
    assert created
    assert not created_again
    assert again == first
    assert Alert.objects.count() == 1


def test_a_flapping_subject_is_rate_limited_and_the_excess_counted(world: World, settings) -> None:
    settings.LOCKERHUB_ALERTS = {**settings.LOCKERHUB_ALERTS, "RATE_LIMIT": 3}
    for n in range(3):
        assert forced(world, n, NOW + timedelta(minutes=n))[1]
    newest, created = forced(world, 99, NOW + timedelta(minutes=4))
    forced(world, 100, NOW + timedelta(minutes=5))

    assert not created
    assert Alert.objects.count() == 3
    newest.refresh_from_db()
    assert newest.dedup_key == "door-forced:BANK-A:5:2"
    assert newest.suppressed_count == 2
    # Another door is another subject; the limit window passes.
    assert forced_other_slot(world)[1]
    assert forced(world, 101, NOW + timedelta(minutes=61))[1]


def forced_other_slot(world: World) -> tuple[Alert | None, bool]:
    return actions.raise_alert(
        Alert.Kind.DOOR_FORCED,
        "door-forced:BANK-A:6:1",
        "Door 6 forced",
        now=NOW + timedelta(minutes=6),
        bank=world.bank,
        slot=world.slot(6),
    )
