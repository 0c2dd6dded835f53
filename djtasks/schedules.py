"""Periodic schedules under Celery's names: schedule (interval), crontab, clocked (pure layer).

Nothing here reads the clock: callers pass ``now`` (aware); every datetime returned is UTC.
``is_due(last_run_at, now)`` answers Celery's ``(is_due, next)``. However many runs beat
missed while down, one is due; once sent (``last_run_at = now``) the schedule goes on from
now, never in a burst. ``last_run_at=None`` (never ran): an interval is due at once, a
clocked schedule at its time, a crontab at its next time (``crontab.first_run_at``).

A crontab matches the wall clock of its zone and compares instants in UTC. Across DST:
a wall time skipped in spring runs once, at the first instant after the gap (cron's rule;
daily 01:30 in London runs at 02:00 BST on 2026-03-29); a wall time repeated in autumn runs
once, in its first pass, unless the hour field is every hour: then both passes run (Vixie
cron's rule for wildcards), so an hourly crontab runs once in every real hour.
"""

from __future__ import annotations

import calendar
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

#: What a crontab field accepts, as Celery's crontab does: "*/15", 7, or {0, 30}.
Cronspec = str | int | Iterable[int]

#: ``next_check`` of a schedule with no run left (a clocked one that ran); beat caps it.
NEVER = math.inf

#: How late a crontab that never ran may be seen at its time and still run (first_run_at).
FIRST_RUN_GRACE = timedelta(minutes=1)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_SECOND = timedelta(seconds=1)
ONE_MICROSECOND = timedelta(microseconds=1)


class ScheduleState(NamedTuple):
    """Celery's ``(is_due, next)`` pair: run now?, and seconds until beat should look again."""

    is_due: bool
    next_check: float


class BaseSchedule(ABC):
    """When a periodic task runs; a subclass says when its next run after a moment is."""

    @abstractmethod
    def next_run_after(self, moment: datetime) -> datetime | None:
        """Return the first run time strictly after ``moment``, or None when none is left."""

    def first_run_at(self, now: datetime) -> datetime | None:
        """Return when a schedule that never ran is due: at once, as Celery's beat does."""
        return aware_utc("now", now)

    def due_at(self, last_run_at: datetime | None, now: datetime) -> datetime | None:
        """Return when the run after ``last_run_at`` is due (maybe in the past); None: never."""
        if last_run_at is None:
            return self.first_run_at(now)
        return self.next_run_after(aware_utc("last_run_at", last_run_at))

    def is_due(self, last_run_at: datetime | None, now: datetime) -> ScheduleState:
        """Return whether a run is due at ``now`` and the seconds until the next check."""
        now = aware_utc("now", now)
        due_at = self.due_at(last_run_at, now)
        if due_at is not None and due_at <= now:
            # Sending now makes now the last run, whatever was missed before it.
            return ScheduleState(True, seconds_until(self.next_run_after(now), now))
        return ScheduleState(False, seconds_until(due_at, now))

    def remaining_estimate(self, last_run_at: datetime | None, now: datetime) -> timedelta:
        """Return the time from ``now`` until the next run is due: negative when overdue."""
        due_at = self.due_at(last_run_at, now)
        return timedelta.max if due_at is None else due_at - aware_utc("now", now)


@dataclass(frozen=True, init=False, repr=False)
class schedule(BaseSchedule):  # noqa: N801 - Celery's name
    """Every ``run_every``; with ``relative``, each run time is rounded down on the clock.

    Celery's meaning of ``relative``: False runs ``run_every`` after the last run; True rounds
    that time down to the unit of the interval (a day, an hour or a minute; shorter intervals
    are not rounded), so an hourly schedule runs on the hour. djtasks rounds on the UTC clock.
    """

    run_every: timedelta
    relative: bool = False

    def __init__(self, run_every: timedelta | float, relative: bool = False) -> None:
        object.__setattr__(self, "run_every", positive_interval(run_every))
        object.__setattr__(self, "relative", bool(relative))

    @property
    def rounding_unit(self) -> timedelta | None:
        """Return the unit a relative run time is rounded down to (Celery's resolutions)."""
        units = (timedelta(days=1), timedelta(hours=1), timedelta(minutes=1))
        return next((unit for unit in units if self.relative and self.run_every >= unit), None)

    def next_run_after(self, moment: datetime) -> datetime:
        end = aware_utc("moment", moment) + self.run_every
        unit = self.rounding_unit
        # run_every >= unit, so the rounded time is still strictly after moment.
        return end if unit is None else EPOCH + (end - EPOCH) // unit * unit

    def __str__(self) -> str:
        text = f"every {describe(self.run_every)}"
        unit = self.rounding_unit
        return text if unit is None else f"{text}, rounded to the {describe(unit)}"

    def __repr__(self) -> str:
        return f"<schedule: {self}>"


@dataclass(frozen=True, init=False, repr=False)
class crontab(BaseSchedule):  # noqa: N801 - Celery's name
    """Celery's crontab, plus ``second`` (default 0) and its own zone ``tz`` (None: UTC).

    Fields take Celery's syntax (``*/15``, ``1-5``, ``0-30/10``, ``1,3,5``, ``mon-fri``, ``sun``,
    ``jan-mar``; 0 and 7 are Sunday), an int or ints, and are kept as text. As in Celery a day
    must match day_of_week AND day_of_month AND month_of_year.
    """

    minute: str = "*"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    second: str = "0"
    tz: tzinfo | None = None
    _expression: str = field(init=False, repr=False, compare=False)
    _every_hour: bool = field(init=False, repr=False, compare=False)

    def __init__(self, minute: Cronspec = "*", hour: Cronspec = "*", day_of_week: Cronspec = "*",
                 day_of_month: Cronspec = "*", month_of_year: Cronspec = "*", *,
                 second: Cronspec = "0", tz: tzinfo | str | None = None) -> None:
        specs = {"minute": minute, "hour": hour, "day_of_month": day_of_month,
                 "month_of_year": month_of_year, "day_of_week": day_of_week, "second": second}
        values: dict[str, frozenset[int]] = {}
        for name, spec in specs.items():
            text = field_text(name, spec)
            object.__setattr__(self, name, text)
            values[name] = expand_field(name, text)
        # Celery's check; 2000 was a leap year, so 29 February counts as a day that exists.
        if not any(day <= calendar.monthrange(2000, month)[1] for month in values["month_of_year"]
                   for day in values["day_of_month"]):
            raise ValueError(f"crontab day_of_month: invalid value {self.day_of_month!r} (expected a "
                             f"day that exists in month_of_year {self.month_of_year!r})")
        object.__setattr__(self, "tz", time_zone(tz))
        # croniter's field order; a full field is written "*" so the expression reads well.
        object.__setattr__(self, "_expression", " ".join(
            "*" if values[name] == full_range(name) else ",".join(map(str, sorted(values[name])))
            for name in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week", "second")
        ))
        object.__setattr__(self, "_every_hour", values["hour"] == full_range("hour"))

    @property
    def zone(self) -> tzinfo:
        """Return the zone whose wall clock the fields are matched against."""
        return self.tz or UTC

    def in_timezone(self, tz: tzinfo | str | None) -> crontab:
        """Return a copy evaluated in ``tz``; beat passes the timezone setting when tz is None."""
        return replace(self, tz=time_zone(tz))

    def first_run_at(self, now: datetime) -> datetime | None:
        """Return the next run time, counting one that passed less than FIRST_RUN_GRACE ago.

        As in Celery, a nightly entry added at noon waits for the night. Beat keeps no time of
        creation; the grace still runs a new entry that beat sees a little after its time.
        """
        return self.next_run_after(aware_utc("now", now) - FIRST_RUN_GRACE)

    def next_run_after(self, moment: datetime) -> datetime | None:
        moment = aware_utc("moment", moment)
        local = moment.astimezone(self.zone)
        wall = local.replace(tzinfo=None, fold=0)
        repeated = repeated_walls(local)
        start = wall
        if repeated is not None and local.fold == 1 and not self._every_hour:
            # The rest of the repeated hour ran in its first pass: look from its end on.
            start = max(wall, repeated[1] - ONE_MICROSECOND)
        best = self._first_run_after(start, moment)
        if repeated is not None and local.fold == 0 and self._every_hour:
            # A wall time of the first pass, already behind us, comes round again after the change.
            again = next(self._walls_after(repeated[0] - ONE_MICROSECOND), None)
            if again is not None and again <= wall:
                second_pass = again.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
                best = second_pass if best is None else min(best, second_pass)
        return best

    def _first_run_after(self, start: datetime, moment: datetime) -> datetime | None:
        # Instants grow with wall times except in a repeated hour, where the first pass of a
        # later wall time precedes the second pass of an earlier one: take the earliest.
        for wall in self._walls_after(start):
            later = [instant for instant in self._instants(wall) if instant > moment]
            if later:
                return min(later)
        return None

    def _walls_after(self, start: datetime) -> Iterator[datetime]:
        """Yield the matching naive wall times strictly after ``start``, in order."""
        times = croniter(self._expression, start, day_or=False)
        while True:
            try:
                yield times.get_next(datetime)
            except CroniterBadDateError:  # croniter gives up after 50 years without a match
                return

    def _instants(self, wall: datetime) -> tuple[datetime, ...]:
        """Return the UTC instants at which the wall time ``wall`` runs in this zone."""
        first, second = wall.replace(tzinfo=self.zone, fold=0), wall.replace(tzinfo=self.zone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return (first.astimezone(UTC),)
        if first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != wall:
            return (gap_end(wall, self.zone),)
        if self._every_hour:
            return first.astimezone(UTC), second.astimezone(UTC)
        return (first.astimezone(UTC),)

    def __str__(self) -> str:
        return self._text("")

    def __repr__(self) -> str:
        return f"<crontab: {self._text(' (m h dM MY dW)')}>"

    def _text(self, legend: str) -> str:
        fields = (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        second = "" if self.second == "0" else f", second {self.second}"
        zone = "" if self.tz is None else f", {getattr(self.tz, 'key', None) or self.tz}"
        return " ".join(fields) + legend + second + zone


@dataclass(frozen=True, repr=False)
class clocked(BaseSchedule):  # noqa: N801 - django-celery-beat's name
    """Once, at ``clocked_time`` (aware): due when that time has come and it has not run since."""

    clocked_time: datetime

    def __post_init__(self) -> None:
        aware_utc("clocked_time", self.clocked_time)

    def first_run_at(self, now: datetime) -> datetime:
        return self.clocked_time.astimezone(UTC)

    def next_run_after(self, moment: datetime) -> datetime | None:
        at = self.clocked_time.astimezone(UTC)
        return at if at > aware_utc("moment", moment) else None

    def __str__(self) -> str:
        return f"at {self.clocked_time.isoformat()}"

    def __repr__(self) -> str:
        return f"<clocked: {self}>"


def schedule_from_setting(value: BaseSchedule | timedelta | float, relative: bool = False) -> BaseSchedule:
    """Return the schedule of a ``beat_schedule`` entry: seconds, a timedelta or a schedule."""
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, timedelta | int | float) and not isinstance(value, bool):
        return schedule(value, relative=relative)
    raise TypeError(f"schedule: expected a number of seconds, a timedelta or a schedule, got {value!r}")


# -- helpers ----------------------------------------------------------------------------------

DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
               "september", "october", "november", "december")

# name -> (lowest, highest, {name: value}); day_of_week allows 7 for Sunday, as cron does.
FIELDS: dict[str, tuple[int, int, dict[str, int]]] = {
    "second": (0, 59, {}),
    "minute": (0, 59, {}),
    "hour": (0, 23, {}),
    "day_of_week": (0, 7, {n: i for i, name in enumerate(DAY_NAMES) for n in (name[:3], name)}),
    "day_of_month": (1, 31, {}),
    "month_of_year": (1, 12, {n: i + 1 for i, name in enumerate(MONTH_NAMES) for n in (name[:3], name)}),
}


def aware_utc(name: str, value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime has no instant, so it is refused."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name}: expected an aware datetime, got {value!r}")
    if value.utcoffset() is None:
        raise ValueError(f"{name}: expected an aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def seconds_until(moment: datetime | None, now: datetime) -> float:
    return NEVER if moment is None else (moment - now).total_seconds()


def positive_interval(value: timedelta | float) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise TypeError(f"run_every: expected a timedelta or a number of seconds, got {value!r}")
    # NaN and infinity fail as "not positive", like zero does.
    interval = value if isinstance(value, timedelta) else timedelta(seconds=math.isfinite(value) and value)
    if interval <= timedelta(0):
        raise ValueError(f"run_every: expected a positive interval, got {value!r}")
    return interval


def describe(interval: timedelta) -> str:
    """Return "hour", "2 hours" or "1.5 seconds": the largest unit that divides ``interval``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, rest = divmod(interval, timedelta(seconds=size))
        if not rest:
            return unit if count == 1 else f"{count} {unit}s"
    return f"{interval.total_seconds():g} seconds"


def field_text(name: str, spec: Cronspec) -> str:
    """Return a crontab field as text: ints and collections of ints become "1,3"."""
    if isinstance(spec, str):
        return spec.strip()
    if isinstance(spec, int) and not isinstance(spec, bool):
        return str(spec)
    values = list(spec) if isinstance(spec, Iterable) else None
    if values is not None and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return ",".join(str(v) for v in sorted(values))
    raise TypeError(f"crontab {name}: expected a str, an int or a collection of ints, got {spec!r}")


def full_range(name: str) -> frozenset[int]:
    low, high, _names = FIELDS[name]
    return frozenset(range(low, min(high, 6) + 1) if name == "day_of_week" else range(low, high + 1))


def expand_field(name: str, text: str) -> frozenset[int]:
    """Return the values a field's text stands for; raise ValueError naming field and text."""
    low, high, names = FIELDS[name]
    try:
        values = {v for part in text.split(",") for v in expand_part(part.strip().lower(), low, high, names)}
    except ValueError as exc:  # expand_part says what it expected; the field is named here
        raise ValueError(f"crontab {name}: invalid value {text!r} ({exc})") from None
    # Sunday is both 0 and 7 in day_of_week.
    return frozenset(0 if name == "day_of_week" and v == 7 else v for v in values)


def expand_part(part: str, low: int, high: int, names: dict[str, int]) -> list[int]:
    base, slash, step_text = part.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()) or int(step_text) < 1:
            raise ValueError("expected a step of 1 or more")
        step = int(step_text)
    if base == "*":
        return list(range(low, high + 1, step))
    first_text, dash, last_text = base.partition("-")
    first = field_value(first_text, low, high, names)
    if not dash:
        # "5/15" is cron's "5-max/15"; a lone value is itself.
        return list(range(first, high + 1, step)) if slash else [first]
    last = field_value(last_text, low, high, names)
    # A range that ends before it starts wraps round, as in Celery: "fri-mon", "22-2".
    span = list(range(first, last + 1)) if first <= last else [*range(first, high + 1), *range(low, last + 1)]
    return span[::step]


def field_value(text: str, low: int, high: int, names: dict[str, int]) -> int:
    value = int(text) if text.isascii() and text.isdigit() else names.get(text)
    if value is None or not low <= value <= high:
        named = f" or a name such as {next(iter(names))!r}" if names else ""
        raise ValueError(f"expected {low}-{high}{named}")
    return value


def time_zone(tz: tzinfo | str | None) -> tzinfo | None:
    if tz is None or isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(f"crontab tz: expected a tzinfo or a zone name, got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"crontab tz: invalid value {tz!r} (expected a zone name such as "
                         f"'Europe/London')") from None


def first_instant(low: datetime, high: datetime, holds: Callable[[datetime], bool]) -> datetime:
    """Return the earliest whole second in (low, high] where ``holds`` starts to be true.

    ``holds`` is false at ``low``, true at ``high`` and changes once between: zone changes
    happen on whole seconds, so bisecting whole seconds finds the exact instant.
    """
    while high - low > ONE_SECOND:
        middle = low + timedelta(seconds=(high - low) // ONE_SECOND // 2)
        low, high = (low, middle) if holds(middle) else (middle, high)
    return high


def gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """Return the instant a spring-forward change ends the gap that skips ``wall``."""
    # The two readings of a skipped wall time fall either side of the change.
    low, high = sorted(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    return first_instant(low, high, lambda t: t.astimezone(zone).replace(tzinfo=None) >= wall)


def repeated_walls(local: datetime) -> tuple[datetime, datetime] | None:
    """Return the naive wall times [start, end) a fall-back change repeats, if ``local`` is in them."""
    first, second = local.replace(fold=0), local.replace(fold=1)
    offset, later_offset = first.utcoffset(), second.utcoffset()
    if offset is None or later_offset is None or offset == later_offset:
        return None
    # The change comes less than one shift after the first pass of this wall time.
    shift = offset - later_offset
    start, zone = first.astimezone(UTC).replace(microsecond=0), local.tzinfo
    change = first_instant(start, start + shift, lambda t: t.astimezone(zone).utcoffset() == later_offset)
    begin = change.astimezone(zone).replace(tzinfo=None, fold=0)
    return begin, begin + shift
