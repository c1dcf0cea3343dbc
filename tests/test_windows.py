"""Maintenance windows: open or not at an instant, when they close, when they next open."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.model.records import MaintenanceWindow
from reconciler.runtime.windows import (
    closes_at,
    current_opening,
    is_open,
    next_opens_at,
    openings,
)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Unix seconds of a UTC date and time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


HOUR = 3600.0
SATURDAY_NIGHT = MaintenanceWindow(days=("sat",), start="22:00", duration_minutes=240)


class TestOpen:
    """A window is open from its start, for its duration, on its days only."""

    def test_open_inside_closed_outside(self) -> None:
        w = (MaintenanceWindow(days=("fri",), start="10:00", duration_minutes=60),)
        assert not is_open(w, at(2027, 1, 15, 9, 59, 59))
        assert is_open(w, at(2027, 1, 15, 10, 0))  # the start is inside
        assert is_open(w, at(2027, 1, 15, 10, 59, 59))
        assert not is_open(w, at(2027, 1, 15, 11, 0))  # the end is outside

    def test_only_on_its_days(self) -> None:
        w = (MaintenanceWindow(days=("mon", "wed"), start="01:00", duration_minutes=60),)
        assert is_open(w, at(2027, 1, 11, 1, 30))  # Monday
        assert not is_open(w, at(2027, 1, 12, 1, 30))  # Tuesday
        assert is_open(w, at(2027, 1, 13, 1, 30))  # Wednesday

    def test_no_windows_is_never_open(self) -> None:
        assert not is_open((), at(2027, 1, 15, 10, 0))
        assert closes_at((), at(2027, 1, 15, 10, 0)) is None
        assert next_opens_at((), at(2027, 1, 15, 10, 0)) is None

    def test_a_window_in_another_zone_opens_at_its_local_time(self) -> None:
        w = (
            MaintenanceWindow(
                days=("fri",), start="10:00", duration_minutes=60, time_zone="America/New_York"
            ),
        )
        # 10:00 in New York in January is 15:00 UTC.
        assert not is_open(w, at(2027, 1, 15, 10, 30))
        assert is_open(w, at(2027, 1, 15, 15, 30))


class TestMidnight:
    """A window that crosses midnight stays open into the next day, and closes on time."""

    def test_open_after_midnight_of_its_day(self) -> None:
        # Saturday 2027-01-16 22:00 for four hours: open on Sunday 01:59.
        assert is_open((SATURDAY_NIGHT,), at(2027, 1, 17, 1, 59))
        assert closes_at((SATURDAY_NIGHT,), at(2027, 1, 17, 1, 59)) == at(2027, 1, 17, 2, 0)
        assert not is_open((SATURDAY_NIGHT,), at(2027, 1, 17, 2, 0))

    def test_a_window_longer_than_a_day(self) -> None:
        w = (MaintenanceWindow(days=("fri",), start="20:00", duration_minutes=3 * 24 * 60),)
        assert is_open(w, at(2027, 1, 17, 12, 0))  # Sunday noon, two days in
        assert closes_at(w, at(2027, 1, 17, 12, 0)) == at(2027, 1, 18, 20, 0)

    def test_touching_windows_are_one_opening(self) -> None:
        w = (
            MaintenanceWindow(days=("sat",), start="22:00", duration_minutes=120),
            MaintenanceWindow(days=("sun",), start="00:00", duration_minutes=120),
        )
        assert closes_at(w, at(2027, 1, 16, 23, 0)) == at(2027, 1, 17, 2, 0)
        assert len(openings(w, at(2027, 1, 16, 0, 0), at(2027, 1, 18, 0, 0))) == 1


class TestDaylightSaving:
    """Windows keep their local start and last their duration in elapsed time across DST."""

    LONDON = "Europe/London"

    def test_duration_is_elapsed_time_across_the_spring_change(self) -> None:
        # 2027-03-28: London jumps from 01:00 GMT to 02:00 BST.
        w = (MaintenanceWindow(("sun",), "00:30", 180, self.LONDON),)
        opening = current_opening(w, at(2027, 3, 28, 0, 45))
        assert opening is not None
        assert opening.start == at(2027, 3, 28, 0, 30)
        assert opening.end - opening.start == 3 * HOUR

    def test_a_start_in_the_spring_gap_opens_with_the_old_offset(self) -> None:
        # 01:30 does not exist on that day in London; fold=0 reads it as 01:30 GMT.
        w = (MaintenanceWindow(("sun",), "01:30", 60, self.LONDON),)
        assert next_opens_at(w, at(2027, 3, 27, 12, 0)) == at(2027, 3, 28, 1, 30)

    def test_a_start_the_autumn_change_repeats_opens_the_first_time(self) -> None:
        # 2027-10-31: 01:30 happens at 00:30 UTC (BST) and again at 01:30 UTC (GMT).
        w = (MaintenanceWindow(("sun",), "01:30", 60, self.LONDON),)
        assert next_opens_at(w, at(2027, 10, 30, 12, 0)) == at(2027, 10, 31, 0, 30)
        assert not is_open(w, at(2027, 10, 31, 1, 45))

    def test_local_start_moves_in_utc_with_summer_time(self) -> None:
        w = (MaintenanceWindow(("sat",), "22:00", 60, self.LONDON),)
        assert next_opens_at(w, at(2027, 1, 10, 0, 0)) == at(2027, 1, 16, 22, 0)  # GMT
        assert next_opens_at(w, at(2027, 7, 1, 0, 0)) == at(2027, 7, 3, 21, 0)  # BST


class TestNextOpening:
    """The next opening is after the current one, or the next start when closed."""

    def test_when_closed_the_next_start(self) -> None:
        assert next_opens_at((SATURDAY_NIGHT,), at(2027, 1, 15, 8, 0)) == at(2027, 1, 16, 22, 0)

    def test_when_open_the_one_after_the_current(self) -> None:
        inside = at(2027, 1, 16, 23, 0)
        assert next_opens_at((SATURDAY_NIGHT,), inside) == at(2027, 1, 23, 22, 0)

    def test_the_earliest_of_several_windows(self) -> None:
        w = (
            SATURDAY_NIGHT,
            MaintenanceWindow(days=("tue",), start="03:00", duration_minutes=30),
        )
        assert next_opens_at(w, at(2027, 1, 17, 8, 0)) == at(2027, 1, 19, 3, 0)
