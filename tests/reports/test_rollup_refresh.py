"""The rollups follow real takes and returns, and refreshing twice never double-counts."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from access.models import AccessEvent
from assets import tasks
from assets.models import RollupWatermark, TakesByHour, UsageByDay
from assets.reports import ReportFilter, checkout_length, denied_taps, takes_per_day
from assets.rollups import rebuild_report_rollups, refresh_report_rollups
from tests.conftest import WEDNESDAY_10AM, World
from tests.flows import give_back, take

WEDNESDAY = date(2026, 3, 11)
THAT_DAY = ReportFilter(start=WEDNESDAY, end=WEDNESDAY)


def test_refresh_picks_up_a_take_and_then_its_return(world: World, time_machine) -> None:
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    refresh_report_rollups(now=WEDNESDAY_10AM + timedelta(minutes=30))

    assert takes_per_day(THAT_DAY).rows == [{"day": WEDNESDAY, "takes": 1}]
    assert checkout_length(THAT_DAY).rows[0]["returned"] == 0
    assert UsageByDay.objects.get().peak == 1

    back_at = WEDNESDAY_10AM + timedelta(hours=1)
    give_back(world.bank, world.ana_badge.uid, back_at)
    tasks.refresh_report_rollups()  # the beat task, at the frozen time (10:00)
    refresh_report_rollups(now=back_at + timedelta(minutes=1))

    # Taken at 10:00:03, put back at 11:00:05: 60 whole minutes.
    assert checkout_length(THAT_DAY).rows == [
        {"asset_type": "Scanner", "returned": 1, "mean_minutes": 60.0, "median_minutes": 60.0}
    ]
    assert takes_per_day(THAT_DAY).rows == [{"day": WEDNESDAY, "takes": 1}]
    # Two granted taps (take, return), nothing denied.
    assert denied_taps(THAT_DAY).summary == {"taps": 2, "denied": 0, "denied_share": 0.0}
    assert RollupWatermark.objects.get().refreshed_until == back_at + timedelta(minutes=1)


def test_refreshing_or_rebuilding_again_changes_nothing(world: World, time_machine) -> None:
    time_machine.move_to(WEDNESDAY_10AM, tick=False)
    take(world.bank, world.ana_badge.uid, WEDNESDAY_10AM)
    now = WEDNESDAY_10AM + timedelta(hours=2)
    refresh_report_rollups(now=now)
    snapshot = sorted(TakesByHour.objects.values_list("bank", "asset_type", "day", "hour", "takes"))

    refresh_report_rollups(now=now)
    rebuild_report_rollups(WEDNESDAY - timedelta(days=3), WEDNESDAY + timedelta(days=1), now=now)

    assert (
        sorted(TakesByHour.objects.values_list("bank", "asset_type", "day", "hour", "takes"))
        == snapshot
    )
    assert snapshot == [(world.bank.pk, world.scanner.pk, WEDNESDAY, 10, 1)]


def test_a_late_arriving_tap_is_caught_by_the_nightly_rebuild(world: World, time_machine) -> None:
    monday_noon = datetime(2026, 3, 9, 12, 0, tzinfo=WEDNESDAY_10AM.tzinfo)
    refresh_report_rollups(now=WEDNESDAY_10AM)
    # A bank that was offline since Monday replays its journal: the tap keeps its own time.
    AccessEvent.objects.create(
        bank=world.bank, at=monday_noon, uid="0411223344", granted=False, reason="badge_unknown"
    )
    monday = ReportFilter(start=monday_noon.date(), end=monday_noon.date())

    refresh_report_rollups(now=WEDNESDAY_10AM + timedelta(minutes=1))
    assert denied_taps(monday).summary["denied"] == 0  # older than the refresh's slack

    time_machine.move_to(WEDNESDAY_10AM + timedelta(hours=14), tick=False)  # the nightly run
    tasks.rebuild_recent_report_rollups()
    assert denied_taps(monday).summary["denied"] == 1
