"""Read-side questions about access: shift windows, applicable rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from access.models import Employee, Shift, ShiftAssignment


def assignments_around(employee: Employee, now: datetime) -> list[ShiftAssignment]:
    """Assignments that may hold a shift window around ``now`` (yesterday to tomorrow, UTC-wide)."""
    day = now.date()
    return list(
        ShiftAssignment.objects.filter(employee=employee)
        .filter(valid_from__lte=day + timedelta(days=2))
        .exclude(valid_until__lt=day - timedelta(days=2))
        .select_related("shift__site")
    )


def shift_window(
    assignments: list[ShiftAssignment], now: datetime, before: timedelta, after: timedelta
) -> tuple[Shift, datetime, datetime] | None:
    """The assigned shift occurrence whose window (with grace) holds ``now``, if any.

    An assignment counts for an occurrence that *starts* on a day within its validity, read in
    the shift's site time zone; of several matches the one ending last wins (a later due time).
    """
    best: tuple[Shift, datetime, datetime] | None = None
    for assignment in assignments:
        shift = assignment.shift
        tz = shift.site.tz
        window = shift.window_at(now, tz, before, after)
        if window is None:
            continue
        start_day = window[0].astimezone(tz).date()
        if start_day < assignment.valid_from or (
            assignment.valid_until and start_day > assignment.valid_until
        ):
            continue
        if best is None or window[1] > best[2]:
            best = (shift, window[0], window[1])
    return best
