"""Maintenance windows as instants: is a window open at t, when does it close, when next open.

Pure functions of (declared windows, unix seconds); no windows declared means never open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from reconciler.model.records import MaintenanceWindow

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEK_DAYS = 7


@dataclass(frozen=True, slots=True, order=True)
class Opening:
    """One concrete opening, in unix seconds: open for ``start <= t < end``."""

    start: float
    end: float

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end


def _start_time(window: MaintenanceWindow) -> time:
    hours, minutes = window.start.split(":")
    return time(int(hours), int(minutes))


def _occurrences(window: MaintenanceWindow, first: date, last: date) -> Iterable[Opening]:
    """Openings of one window whose local start day is between ``first`` and ``last``."""
    zone = ZoneInfo(window.time_zone)
    days = {DAY_NAMES.index(d) for d in window.days}
    at = _start_time(window)
    day = first
    while day <= last:
        if day.weekday() in days:
            start = datetime.combine(day, at, tzinfo=zone).timestamp()
            yield Opening(start, start + window.duration_minutes * 60.0)
        day += timedelta(days=1)


def openings(windows: Sequence[MaintenanceWindow], since: float, until: float) -> list[Opening]:
    """Every opening (merged where they overlap or touch) that overlaps ``[since, until)``.

    A window opens at its local ``start`` on each of its ``days`` in its time zone and lasts
    ``duration_minutes`` of elapsed time, so it may cross midnight and a DST change (four hours
    across the autumn change are four real hours). A start in the spring-forward gap opens at
    the instant the old offset gives (PEP 495 fold=0: 02:30 on a day that skips 02:00-03:00
    opens at 03:30 new time); a start the autumn change repeats opens at its first occurrence.
    """
    found: list[Opening] = []
    for window in windows:
        zone = ZoneInfo(window.time_zone)
        # Start the search early enough to catch an opening that began days before and is
        # still open (a window may last longer than a day).
        back = timedelta(days=window.duration_minutes // (24 * 60) + 2)
        first = datetime.fromtimestamp(since, tz=zone).date() - back
        last = datetime.fromtimestamp(until, tz=zone).date() + timedelta(days=1)
        found.extend(_occurrences(window, first, last))
    merged: list[Opening] = []
    for opening in sorted(found):
        if merged and opening.start <= merged[-1].end:
            merged[-1] = Opening(merged[-1].start, max(merged[-1].end, opening.end))
        else:
            merged.append(opening)
    return [o for o in merged if o.end > since and o.start < until]


def current_opening(windows: Sequence[MaintenanceWindow], t: float) -> Opening | None:
    """The opening that contains ``t``, if a window is open then."""
    return next((o for o in openings(windows, t, t + 1.0) if o.contains(t)), None)


def is_open(windows: Sequence[MaintenanceWindow], t: float) -> bool:
    return current_opening(windows, t) is not None


def closes_at(windows: Sequence[MaintenanceWindow], t: float) -> float | None:
    """When the window open at ``t`` closes; None when none is open."""
    opening = current_opening(windows, t)
    return opening.end if opening else None


def next_opens_at(windows: Sequence[MaintenanceWindow], t: float) -> float | None:
    """The start of the first opening after ``t`` (after the current one, if one is open).

    None when no windows are declared: disruptive changes then never run automatically.
    """
    if not windows:
        return None
    # Every window recurs weekly, so two weeks plus the longest window always hold the next.
    longest = max(w.duration_minutes for w in windows) * 60.0
    horizon = t + 2 * _WEEK_DAYS * 86400.0 + longest
    return next((o.start for o in openings(windows, t, horizon) if o.start > t), None)


def describe_instant(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%a %Y-%m-%d %H:%M UTC")
