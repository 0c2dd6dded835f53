"""djtasks.schedules: interval, crontab and clocked schedules against an injected clock."""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from djtasks.schedules import (
    FIRST_RUN_GRACE,
    BaseSchedule,
    ScheduleState,
    clocked,
    crontab,
    schedule,
    schedule_from_setting,
)

NOW = datetime(2026, 1, 7, 10, 7, 30, tzinfo=UTC)  # a Wednesday
LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str) -> datetime:
    """Parse an ISO time; one without an offset is UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def walk(sched: BaseSchedule, start: datetime, end: datetime, *, step: timedelta | None = None,
         cap: timedelta = timedelta(minutes=10)) -> list[datetime]:
    """Run ``sched`` as beat would from ``start`` to ``end``; return the times it ran.

    Without ``step`` the clock moves by each next_check (capped), as beat sleeps; with it,
    by that fixed step, as a beat that polls often. The clock runs in UTC: adding to a
    zoned datetime would add wall-clock time, not real time.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    runs, last, now = [], start, start
    while now < end:
        due, next_check = sched.is_due(last, now)
        assert next_check > 0
        if due:
            runs.append(now)
            last = now
        now += step or min(timedelta(seconds=next_check), cap)
    return runs


# -- interval ---------------------------------------------------------------------------------


def test_interval_due_and_not_due():
    every = schedule(30)
    assert every.is_due(NOW - timedelta(seconds=10), NOW) == ScheduleState(False, 20.0)
    assert every.is_due(NOW - timedelta(seconds=30), NOW) == ScheduleState(True, 30.0)
    due, next_check = every.is_due(NOW - timedelta(seconds=31), NOW)  # unpacks as Celery's pair
    assert (due, next_check) == (True, 30.0)


def test_interval_never_run_is_due_at_once():
    assert schedule(timedelta(minutes=5)).is_due(None, NOW) == (True, 300.0)


def test_interval_in_seconds_or_timedelta_is_one_schedule():
    assert schedule(90) == schedule(90.0) == schedule(timedelta(seconds=90))
    assert schedule(1.5).run_every == timedelta(seconds=1.5)
    assert schedule(30).next_run_after(NOW) == NOW + timedelta(seconds=30)


@pytest.mark.parametrize("run_every", [0, -1, 0.0, timedelta(0), timedelta(seconds=-5), math.nan])
def test_interval_must_be_positive(run_every):
    with pytest.raises(ValueError, match=r"run_every: expected a positive interval, got "):
        schedule(run_every)


@pytest.mark.parametrize("run_every", ["30", None, True])
def test_interval_must_be_a_number_or_timedelta(run_every):
    with pytest.raises(TypeError, match=r"run_every: expected a timedelta or a number of seconds, got "):
        schedule(run_every)


def test_interval_not_relative_counts_from_the_last_run():
    hourly = schedule(timedelta(hours=1))
    assert hourly.next_run_after(at("2026-01-07T10:07:30")) == at("2026-01-07T11:07:30")


@pytest.mark.parametrize(("run_every", "last", "expected"), [
    (timedelta(hours=1), "2026-01-07T10:07:30", "2026-01-07T11:00:00"),
    (timedelta(hours=2), "2026-01-07T10:07:30", "2026-01-07T12:00:00"),
    (timedelta(minutes=15), "2026-01-07T10:07:30", "2026-01-07T10:22:00"),
    (timedelta(days=1), "2026-01-07T10:07:30", "2026-01-08T00:00:00"),
    (timedelta(seconds=30), "2026-01-07T10:07:10", "2026-01-07T10:07:40"),  # under a minute: not rounded
])
def test_interval_relative_rounds_down_to_its_unit(run_every, last, expected):
    assert schedule(run_every, relative=True).next_run_after(at(last)) == at(expected)


def test_interval_relative_runs_on_the_hour():
    hourly = schedule(timedelta(hours=1), relative=True)
    last = at("2026-01-07T10:07:30")
    assert hourly.is_due(last, at("2026-01-07T10:59:59")) == (False, 1.0)
    assert hourly.is_due(last, at("2026-01-07T11:00:00")) == (True, 3600.0)
    assert hourly.is_due(last, at("2026-01-07T11:20:00")) == (True, 2400.0)  # late: back on the hour


def test_interval_missed_runs_fire_once_after_downtime():
    every = schedule(30)
    assert every.is_due(NOW - timedelta(hours=3), NOW) == (True, 30.0)
    assert every.is_due(NOW, NOW + timedelta(seconds=1)) == (False, 29.0)


def test_interval_remaining_estimate():
    every = schedule(60)
    assert every.remaining_estimate(NOW, NOW + timedelta(seconds=15)) == timedelta(seconds=45)
    assert every.remaining_estimate(NOW, NOW + timedelta(seconds=75)) == timedelta(seconds=-15)
    assert every.remaining_estimate(None, NOW) == timedelta(0)


def test_times_must_be_aware_and_results_are_utc():
    with pytest.raises(ValueError, match="now: expected an aware datetime, got naive"):
        schedule(30).is_due(None, NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="last_run_at: expected an aware datetime"):
        schedule(30).is_due(NOW.replace(tzinfo=None), NOW)
    paris = NOW.astimezone(ZoneInfo("Europe/Paris"))
    assert schedule(30).next_run_after(paris).tzinfo is UTC
    assert schedule(30).next_run_after(paris) == NOW + timedelta(seconds=30)


def test_interval_text():
    assert str(schedule(30)) == "every 30 seconds"
    assert str(schedule(timedelta(hours=1))) == "every hour"
    assert str(schedule(timedelta(minutes=90))) == "every 90 minutes"
    assert str(schedule(timedelta(days=2), relative=True)) == "every 2 days, rounded to the day"
    assert repr(schedule(1.5)) == "<schedule: every 1.5 seconds>"


# -- crontab: fields --------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "after", "expected"), [
    ({"minute": "*/15"}, "2026-01-07T10:07:30", "2026-01-07T10:15"),
    ({"minute": "0-30/10"}, "2026-01-07T10:21", "2026-01-07T10:30"),
    ({"minute": "0-30/10"}, "2026-01-07T10:30", "2026-01-07T11:00"),
    ({"minute": "1,3,5"}, "2026-01-07T10:03", "2026-01-07T10:05"),
    ({"minute": 0, "hour": "1-5"}, "2026-01-07T05:30", "2026-01-08T01:00"),
    ({"minute": 0, "hour": 3}, "2026-01-07T10:00", "2026-01-08T03:00"),
    ({"minute": [30, 0], "hour": 3}, "2026-01-07T03:10", "2026-01-07T03:30"),
    ({"minute": 0, "hour": "22-2"}, "2026-01-07T23:00", "2026-01-08T00:00"),  # wraps, as Celery's
    ({"minute": 0, "hour": 9, "day_of_week": "mon-fri"}, "2026-01-09T09:00", "2026-01-12T09:00"),
    ({"minute": 0, "hour": 9, "day_of_week": "fri-mon"}, "2026-01-07T09:00", "2026-01-09T09:00"),
    ({"minute": 0, "hour": 0, "day_of_week": "sun"}, "2026-01-07T00:00", "2026-01-11T00:00"),
    ({"minute": 0, "hour": 0, "day_of_week": "Sunday"}, "2026-01-07T00:00", "2026-01-11T00:00"),
    ({"minute": 0, "hour": 0, "day_of_week": 0}, "2026-01-07T00:00", "2026-01-11T00:00"),
    ({"minute": 0, "hour": 0, "day_of_week": 7}, "2026-01-07T00:00", "2026-01-11T00:00"),
    ({"minute": 0, "hour": 0, "day_of_week": "6-7"}, "2026-01-07T00:00", "2026-01-10T00:00"),
    ({"minute": 0, "hour": 0, "day_of_month": "1,15"}, "2026-01-07T00:00", "2026-01-15T00:00"),
    ({"minute": 0, "hour": 0, "day_of_month": 1, "month_of_year": "jan-mar"}, "2026-03-05T00:00",
     "2027-01-01T00:00"),
    ({"minute": 0, "hour": 0, "day_of_month": 1, "month_of_year": "*/3"}, "2026-01-05T00:00",
     "2026-04-01T00:00"),
    # As in Celery, the day fields must all match: the first Monday of each month.
    ({"minute": 0, "hour": 0, "day_of_week": "mon", "day_of_month": "1-7"}, "2026-01-05T00:00",
     "2026-02-02T00:00"),
    ({}, "2026-01-07T10:07:30", "2026-01-07T10:08"),
])
def test_crontab_field_syntax(fields, after, expected):
    assert crontab(**fields).next_run_after(at(after)) == at(expected)


def test_crontab_second_field():
    every_five = crontab(second="*/5")
    assert every_five.next_run_after(at("2026-01-07T10:00:03")) == at("2026-01-07T10:00:05")
    assert every_five.is_due(at("2026-01-07T10:00:00"), at("2026-01-07T10:00:05")) == (True, 5.0)
    assert every_five.is_due(at("2026-01-07T10:00:00"), at("2026-01-07T10:00:04.5")) == (False, 0.5)
    half_past = crontab(second=30, minute=15)
    assert half_past.next_run_after(at("2026-01-07T10:15:00")) == at("2026-01-07T10:15:30")


def test_crontab_fields_are_normalised_text():
    cron = crontab(minute=0, hour=[3, 1], day_of_week=" mon-fri ")
    assert (cron.second, cron.minute, cron.hour, cron.day_of_week) == ("0", "0", "1,3", "mon-fri")
    assert cron == crontab("0", "1,3", "mon-fri")
    assert str(cron) == "0 1,3 * * mon-fri"
    assert repr(crontab(minute=30, hour=1, second=5, tz="Europe/London")) == (
        "<crontab: 30 1 * * * (m h dM MY dW), second 5, Europe/London>")


@pytest.mark.parametrize(("fields", "message"), [
    ({"hour": 25}, "crontab hour: invalid value '25' (expected 0-23)"),
    ({"hour": "-1"}, "crontab hour: invalid value '-1' (expected 0-23)"),
    ({"hour": "1-"}, "crontab hour: invalid value '1-' (expected 0-23)"),
    ({"minute": 60}, "crontab minute: invalid value '60' (expected 0-59)"),
    ({"minute": "*/0"}, "crontab minute: invalid value '*/0' (expected a step of 1 or more)"),
    ({"minute": "1,,2"}, "crontab minute: invalid value '1,,2' (expected 0-59)"),
    ({"minute": [5, 70]}, "crontab minute: invalid value '5,70' (expected 0-59)"),
    ({"second": "61"}, "crontab second: invalid value '61' (expected 0-59)"),
    ({"second": ""}, "crontab second: invalid value '' (expected 0-59)"),
    ({"day_of_week": "funday"}, "crontab day_of_week: invalid value 'funday' (expected 0-7 or a name "),
    ({"day_of_week": 8}, "crontab day_of_week: invalid value '8' (expected 0-7"),
    ({"day_of_month": 0}, "crontab day_of_month: invalid value '0' (expected 1-31)"),
    ({"day_of_month": "32"}, "crontab day_of_month: invalid value '32' (expected 1-31)"),
    ({"day_of_month": 30, "month_of_year": 2},
     "crontab day_of_month: invalid value '30' (expected a day that exists in month_of_year '2')"),
    ({"month_of_year": "13"}, "crontab month_of_year: invalid value '13' (expected 1-12"),
    ({"month_of_year": "foo"}, "crontab month_of_year: invalid value 'foo' (expected 1-12 or a name such as"),
    ({"tz": "Mars/Olympus"}, "crontab tz: invalid value 'Mars/Olympus'"),
])
def test_invalid_crontab_field_names_field_and_value(fields, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        crontab(**fields)


@pytest.mark.parametrize("fields", [{"hour": 1.5}, {"minute": None}, {"day_of_week": True}, {"tz": 1}])
def test_crontab_field_of_a_wrong_type(fields):
    with pytest.raises(TypeError, match=f"crontab {next(iter(fields))}: expected "):
        crontab(**fields)


# -- crontab: due -----------------------------------------------------------------------------


def test_crontab_due_remaining_and_next_check():
    nightly = crontab(minute=0, hour=3)
    last = at("2026-01-06T03:00")
    assert nightly.is_due(last, at("2026-01-07T02:00")) == (False, 3600.0)
    assert nightly.remaining_estimate(last, at("2026-01-07T02:00")) == timedelta(hours=1)
    assert nightly.is_due(last, at("2026-01-07T03:00:00.25")) == (True, 86400 - 0.25)
    assert nightly.next_run_after(at("2026-01-07T03:00")) == at("2026-01-08T03:00")


def test_crontab_missed_runs_fire_once_after_downtime():
    nightly = crontab(minute=0, hour=3)
    now = at("2026-01-07T12:00")
    assert nightly.is_due(at("2026-01-04T03:00"), now) == (True, 15 * 3600.0)
    assert nightly.remaining_estimate(at("2026-01-04T03:00"), now) == -timedelta(days=2, hours=9)
    assert nightly.is_due(now, now + timedelta(seconds=1)) == (False, 15 * 3600.0 - 1)


def test_crontab_that_never_ran_waits_for_its_time():
    # As Celery: a nightly entry added at noon does not run at noon, but at night.
    nightly = crontab(minute=0, hour=3)
    assert nightly.is_due(None, at("2026-01-07T12:00")) == (False, 15 * 3600.0)
    assert nightly.is_due(None, at("2026-01-07T02:59:59")) == (False, 1.0)
    assert nightly.is_due(None, at("2026-01-07T03:00:00.5")).is_due
    assert nightly.is_due(None, at("2026-01-07T03:00") + FIRST_RUN_GRACE).is_due is False


def test_crontab_zone():
    nine = crontab(minute=0, hour=9)
    assert nine.tz is None
    assert nine.zone is UTC
    london = nine.in_timezone("Europe/London")
    assert (london.tz, nine.tz) == (LONDON, None)
    assert london == crontab(minute=0, hour=9, tz=LONDON)
    assert london.next_run_after(at("2026-07-01T00:00")) == at("2026-07-01T08:00")  # 09:00 BST
    fixed = nine.in_timezone(timezone(timedelta(hours=5, minutes=30)))
    assert fixed.next_run_after(at("2026-07-01T00:00")) == at("2026-07-01T03:30")


# -- crontab: daylight saving time -------------------------------------------------------------

# (zone, first day, wall time, the three UTC run times expected over three days)
DAILY_ACROSS_DST = [
    # Spring forward. London skips 01:00-02:00 on 03-29: 01:30 runs at 02:00 BST (01:00 UTC).
    (LONDON, "2026-03-28", 1, ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"]),
    (LONDON, "2026-03-28", 2, ["2026-03-28T02:30", "2026-03-29T01:30", "2026-03-30T01:30"]),
    # New York skips 02:00-03:00 on 03-08: 02:30 runs at 03:00 EDT (07:00 UTC).
    (NEW_YORK, "2026-03-07", 1, ["2026-03-07T06:30", "2026-03-08T06:30", "2026-03-09T05:30"]),
    (NEW_YORK, "2026-03-07", 2, ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30"]),
    # Fall back. London repeats 01:00-02:00 on 10-25: 01:30 runs in the first pass only (BST).
    (LONDON, "2026-10-24", 1, ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"]),
    (LONDON, "2026-10-24", 2, ["2026-10-24T01:30", "2026-10-25T02:30", "2026-10-26T02:30"]),
    # New York repeats 01:00-02:00 on 11-01: 01:30 runs once, at 01:30 EDT.
    (NEW_YORK, "2026-10-31", 1, ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"]),
    (NEW_YORK, "2026-10-31", 2, ["2026-10-31T06:30", "2026-11-01T07:30", "2026-11-02T07:30"]),
]


@pytest.mark.parametrize(("zone", "first_day", "hour", "expected"), DAILY_ACROSS_DST)
def test_daily_crontab_runs_once_a_day_across_dst(zone, first_day, hour, expected):
    daily = crontab(minute=30, hour=hour, tz=zone)
    start = datetime.fromisoformat(first_day).replace(tzinfo=zone)
    runs = walk(daily, start, start + timedelta(days=3))
    assert runs == [at(text) for text in expected]
    assert [run.astimezone(zone).date() for run in runs] == [
        (start + timedelta(days=n)).date() for n in range(3)]


@pytest.mark.parametrize(("zone", "night"), [
    (LONDON, "2026-10-24T22:00"), (NEW_YORK, "2026-11-01T03:00"),
    (LONDON, "2026-03-28T22:00"), (NEW_YORK, "2026-03-08T03:00"),
])
def test_daily_crontab_polled_every_minute_across_the_change(zone, night):
    # A beat that looks every minute through the night of the change still runs it once.
    for hour in (1, 2):
        runs = walk(crontab(minute=30, hour=hour, tz=zone), at(night), at(night) + timedelta(hours=6),
                    step=timedelta(minutes=1))
        assert len(runs) == 1, (hour, runs)


@pytest.mark.parametrize(("zone", "night"), [
    (LONDON, "2026-10-24T22:00"), (NEW_YORK, "2026-11-01T03:00"),
    (LONDON, "2026-03-28T22:00"), (NEW_YORK, "2026-03-08T03:00"),
])
def test_hourly_crontab_runs_once_in_every_real_hour_across_dst(zone, night):
    # The hour field covers every hour, so a repeated hour runs in both passes and a
    # skipped one joins the next: one run per distinct UTC hour, never two, never none.
    start = at(night)
    runs = walk(crontab(minute=0, tz=zone), start, start + timedelta(hours=6), step=timedelta(minutes=1))
    assert runs == [start + timedelta(hours=n) for n in range(1, 6)]


def test_every_quarter_hour_keeps_real_time_across_dst():
    quarter = crontab(minute="*/15", tz=LONDON)
    autumn = walk(quarter, at("2026-10-24T23:00"), at("2026-10-25T03:00"))
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(autumn))
    assert len(autumn) == 15  # 23:15 to 02:45 UTC: four real hours, one repeated on the wall
    # In spring the skipped quarters 01:00-01:45 all become the one run at 02:00 BST.
    spring = walk(quarter, at("2026-03-29T00:15"), at("2026-03-29T01:30"))
    assert spring == [at("2026-03-29T00:30"), at("2026-03-29T00:45"), at("2026-03-29T01:00"),
                      at("2026-03-29T01:15")]


def test_fixed_hour_repeated_by_fall_back_runs_in_its_first_pass_only():
    quarters_of_one = crontab(minute="*/15", hour=1, tz=LONDON)
    runs = walk(quarters_of_one, at("2026-10-24T23:00"), at("2026-10-25T04:00"))
    assert runs == [at("2026-10-25T00:00"), at("2026-10-25T00:15"), at("2026-10-25T00:30"),
                    at("2026-10-25T00:45")]
    # Beat down through the first pass, back in the second: the missed run is sent once.
    last, back = at("2026-10-24T00:45"), at("2026-10-25T01:10")
    assert quarters_of_one.is_due(last, back).is_due
    assert quarters_of_one.next_run_after(back) == at("2026-10-26T01:00")
    every_second = crontab(second="*", minute="*", hour=1, tz=LONDON)
    assert every_second.next_run_after(at("2026-10-25T01:10")) == at("2026-10-26T01:00")


# -- clocked ----------------------------------------------------------------------------------


def test_clocked_is_due_once():
    when = at("2026-01-07T12:00")
    once = clocked(when)
    assert once.is_due(None, when - timedelta(seconds=10)) == (False, 10.0)
    assert once.is_due(None, when) == (True, math.inf)
    assert once.is_due(None, when + timedelta(days=2)) == (True, math.inf)  # after downtime: still once
    assert once.is_due(when, when + timedelta(hours=1)) == (False, math.inf)
    assert once.is_due(when - timedelta(days=1), when) == (True, math.inf)  # ran before it was set
    assert once.next_run_after(when - timedelta(seconds=1)) == when
    assert once.next_run_after(when) is None
    assert once.remaining_estimate(when, when) == timedelta.max
    assert str(once) == "at 2026-01-07T12:00:00+00:00"


def test_clocked_time_must_be_aware():
    with pytest.raises(ValueError, match="clocked_time: expected an aware datetime, got naive"):
        clocked(datetime(2026, 1, 7, 12, 0))


# -- schedule_from_setting --------------------------------------------------------------------


def test_schedule_from_setting_accepts_what_beat_schedule_accepts():
    assert schedule_from_setting(30) == schedule(30)
    assert schedule_from_setting(2.5) == schedule(2.5)
    assert schedule_from_setting(timedelta(hours=1), relative=True) == schedule(3600, relative=True)
    nightly = crontab(minute=0, hour=3)
    assert schedule_from_setting(nightly) is nightly


@pytest.mark.parametrize("value", ["30", None, True, {"minute": 5}])
def test_schedule_from_setting_refuses_anything_else(value):
    with pytest.raises(TypeError, match="schedule: expected a number of seconds, a timedelta or a schedule"):
        schedule_from_setting(value)
