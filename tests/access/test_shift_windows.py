"""Shift windows against a plain reference: time zones, midnight, grace, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from access.models import Shift

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC", "Australia/Sydney"]


def reference_in_window(
    days: int, start: time, end: time, tz: ZoneInfo, now: datetime, before: int, after: int
) -> bool:
    """Every occurrence in a wide span, as plain intervals in UTC; is ``now`` inside one?"""
    local_today = now.astimezone(tz).date()
    for offset in range(-3, 4):
        day = local_today + timedelta(days=offset)
        if not days & (1 << day.weekday()):
            continue
        start_at = datetime(day.year, day.month, day.day, start.hour, start.minute, tzinfo=tz)
        end_day = (
            day + timedelta(days=1) if (end.hour, end.minute) <= (start.hour, start.minute) else day
        )
        end_at = datetime(end_day.year, end_day.month, end_day.day, end.hour, end.minute, tzinfo=tz)
        lo = start_at.astimezone(UTC) - timedelta(minutes=before)
        hi = end_at.astimezone(UTC) + timedelta(minutes=after)
        if lo <= now.astimezone(UTC) < hi:
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(
    days=st.integers(min_value=1, max_value=127),
    start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    end=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    zone=st.sampled_from(ZONES),
    now=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    before=st.integers(min_value=0, max_value=120),
    after=st.integers(min_value=0, max_value=120),
)
def test_window_matches_reference(days, start, end, zone, now, before, after) -> None:
    tz = ZoneInfo(zone)
    shift = Shift(days=days, start=start, end=end)
    got = shift.window_at(now, tz, timedelta(minutes=before), timedelta(minutes=after)) is not None
    assert got == reference_in_window(days, start, end, tz, now, before, after)


def test_night_shift_crosses_midnight() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    night = Shift(days=0b0000001, start=time(22), end=time(6))  # starts Mondays only
    monday, tuesday = date(2026, 3, 9), date(2026, 3, 10)
    assert night.window_at(datetime.combine(monday, time(23), tzinfo=berlin), berlin) is not None
    assert (
        night.window_at(datetime.combine(tuesday, time(5, 59), tzinfo=berlin), berlin) is not None
    )
    assert night.window_at(datetime.combine(tuesday, time(6, 0), tzinfo=berlin), berlin) is None
    assert night.window_at(datetime.combine(tuesday, time(23), tzinfo=berlin), berlin) is None


def test_window_follows_the_sites_clock_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    day = Shift(days=0b1111111, start=time(6), end=time(14))
    # Clocks go forward on 29 March 2026: 06:00 local is 04:00 UTC afterwards, 05:00 UTC before.
    assert day.window_at(datetime(2026, 3, 28, 5, 0, tzinfo=UTC), berlin) is not None
    assert day.window_at(datetime(2026, 3, 28, 4, 30, tzinfo=UTC), berlin) is None
    assert day.window_at(datetime(2026, 3, 30, 4, 30, tzinfo=UTC), berlin) is not None


def test_grace_before_opens_a_shift_that_starts_just_after_midnight() -> None:
    tz = ZoneInfo("UTC")
    early = Shift(days=0b0000010, start=time(0, 10), end=time(8))  # Tuesdays
    monday_late = datetime(2026, 3, 9, 23, 58, tzinfo=tz)
    assert early.window_at(monday_late, tz, before=timedelta(minutes=15)) is not None
    assert early.window_at(monday_late, tz) is None
