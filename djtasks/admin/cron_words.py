"""Crontab fields in words: "every 15 minutes", "at 03:00 on Monday" (edge layer, no I/O).

The console shows a schedule the way its reader thinks of it. Only shapes that read
simply are put in words; anything else (odd steps that do not divide the hour, many
scattered times, both day fields restricted at once) falls back to the raw expression,
so the text is never wrong, only sometimes terse. Fields are read with the crontab's own
parser (``schedules.expand_field``): what is described is what beat runs.
"""

from __future__ import annotations

from djtasks.schedules import DAY_NAMES, MONTH_NAMES, expand_field, full_range

#: At most this many times, days or months are listed by name; more fall back.
MAX_LISTED = 4
#: Monday first, as people read a week; Sunday is 0 in the crontab.
WEEK_ORDER = (1, 2, 3, 4, 5, 6, 0)


def describe_crontab(minute: str = "*", hour: str = "*", day_of_week: str = "*",
                     day_of_month: str = "*", month_of_year: str = "*", second: str = "0") -> str:
    """Return the crontab in words, or its raw expression where words would not be simple."""
    raw = raw_expression(minute, hour, day_of_week, day_of_month, month_of_year, second)
    try:
        values = {name: expand_field(name, str(text).strip()) for name, text in (
            ("second", second), ("minute", minute), ("hour", hour), ("day_of_week", day_of_week),
            ("day_of_month", day_of_month), ("month_of_year", month_of_year))}
    except ValueError:
        return raw
    restricted = {name for name, found in values.items() if found != full_range(name)}
    if {"day_of_week", "day_of_month"} <= restricted:
        return raw  # both must match (Celery's rule), which no short sentence says plainly
    parts = [time_words(values["second"], values["minute"], values["hour"]),
             week_words(values["day_of_week"]) if "day_of_week" in restricted else "",
             month_day_words(values["day_of_month"]) if "day_of_month" in restricted else "",
             month_words(values["month_of_year"]) if "month_of_year" in restricted else ""]
    if any(part is None for part in parts):
        return raw
    return "".join(part for part in parts if part)


def raw_expression(minute: str, hour: str, day_of_week: str, day_of_month: str,
                   month_of_year: str, second: str = "0") -> str:
    """Return the fields as ``str(crontab)`` writes them: cron's order, then a second if any."""
    text = f"{minute} {hour} {day_of_month} {month_of_year} {day_of_week}"
    return text if str(second) == "0" else f"{text}, second {second}"


def time_words(seconds: frozenset[int], minutes: frozenset[int], hours: frozenset[int]) -> str | None:
    """Say when in the day it runs; None where no short phrase says it."""
    every_hour, every_minute = hours == full_range("hour"), minutes == full_range("minute")
    if seconds != {0}:
        return every("second", step_of(seconds, 60)) if every_hour and every_minute else None
    if every_hour:
        return hourly_words(minutes)
    return daily_words(minutes, hours)


def hourly_words(minutes: frozenset[int]) -> str | None:
    """Minutes of every hour: "every minute", "every 15 minutes", "every hour at :05"."""
    if minutes == full_range("minute"):
        return "every minute"
    if (step := step_of(minutes, 60)) is not None:
        return every("minute", step)
    if len(minutes) <= MAX_LISTED:
        return "every hour at " + listed([f":{m:02d}" for m in sorted(minutes)])
    return None


def daily_words(minutes: frozenset[int], hours: frozenset[int]) -> str | None:
    """Times of some hours: "at 03:00", "every 2 hours at :00", "every 15 minutes from 09:00 to 17:45"."""
    if len(minutes) == 1 and (step := step_of(hours, 24)) is not None:
        return f"{every('hour', step)} at :{min(minutes):02d}"
    if len(minutes) * len(hours) <= MAX_LISTED:
        return "at " + listed([f"{h:02d}:{m:02d}" for h in sorted(hours) for m in sorted(minutes)])
    minute_step = 1 if minutes == full_range("minute") else step_of(minutes, 60)
    if minute_step is not None and is_contiguous(sorted(hours)):
        return (f"{every('minute', minute_step)} from {min(hours):02d}:00 "
                f"to {max(hours):02d}:{max(minutes):02d}")
    return None


def week_words(days: frozenset[int]) -> str | None:
    ordered = [day for day in WEEK_ORDER if day in days]
    names = [DAY_NAMES[day].capitalize() for day in ordered]
    if len(ordered) >= 3 and is_contiguous([WEEK_ORDER.index(day) for day in ordered]):
        return f", {names[0]} to {names[-1]}"
    return f" on {listed(names)}" if len(names) <= MAX_LISTED else None


def month_day_words(days: frozenset[int]) -> str | None:
    ordered = sorted(days)
    if len(ordered) >= 3 and is_contiguous(ordered):
        return f" on the {ordinal(ordered[0])} to {ordinal(ordered[-1])} of the month"
    if len(ordered) <= MAX_LISTED:
        return f" on the {listed([ordinal(day) for day in ordered])} of the month"
    return None


def month_words(months: frozenset[int]) -> str | None:
    ordered = sorted(months)
    names = [MONTH_NAMES[month - 1].capitalize() for month in ordered]
    if len(ordered) >= 3 and is_contiguous(ordered):
        return f", {names[0]} to {names[-1]}"
    return f" in {listed(names)}" if len(names) <= MAX_LISTED else None


def step_of(values: frozenset[int], span: int) -> int | None:
    """Return N when ``values`` are 0, N, 2N, ... and N divides ``span`` (truly every N)."""
    ordered = sorted(values)
    if len(ordered) < 2 or ordered[0] != 0:
        return None
    step = ordered[1]
    if span % step or ordered != list(range(0, span, step)):
        return None
    return step


def every(unit: str, step: int | None) -> str | None:
    if step is None:
        return None
    return f"every {unit}" if step == 1 else f"every {step} {unit}s"


def is_contiguous(ordered: list[int]) -> bool:
    return ordered == list(range(ordered[0], ordered[0] + len(ordered)))


def listed(items: list[str]) -> str:
    """Return "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"
