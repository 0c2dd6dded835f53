"""The crontab describer: simple shapes in words, everything else as the raw expression."""

from __future__ import annotations

import pytest

from djtasks.admin.cron_words import describe_crontab

#: (minute, hour, day_of_week, day_of_month, month_of_year, second) -> words
IN_WORDS = [
    (("*", "*", "*", "*", "*"), "every minute"),
    (("*/15", "*", "*", "*", "*"), "every 15 minutes"),
    (("0-59/20", "*", "*", "*", "*"), "every 20 minutes"),
    (("*/1", "*", "*", "*", "*"), "every minute"),
    (("5", "*", "*", "*", "*"), "every hour at :05"),
    (("0,30", "*", "*", "*", "*"), "every 30 minutes"),
    (("5/15", "*", "*", "*", "*"), "every hour at :05, :20, :35 and :50"),
    (("0,30", "1,2,3", "*", "*", "*"), "every 30 minutes from 01:00 to 03:30"),
    (("10,20,40", "*", "*", "*", "*"), "every hour at :10, :20 and :40"),
    (("0", "3", "*", "*", "*"), "at 03:00"),
    (("30", "23", "*", "*", "*"), "at 23:30"),
    (("0", "3,15", "*", "*", "*"), "at 03:00 and 15:00"),
    (("0,30", "8,20", "*", "*", "*"), "at 08:00, 08:30, 20:00 and 20:30"),
    (("0", "*/2", "*", "*", "*"), "every 2 hours at :00"),
    (("15", "*/6", "*", "*", "*"), "every 6 hours at :15"),
    (("0", "3", "1", "*", "*"), "at 03:00 on Monday"),
    (("0", "3", "mon", "*", "*"), "at 03:00 on Monday"),
    (("0", "3", "sun", "*", "*"), "at 03:00 on Sunday"),
    (("0", "3", "7", "*", "*"), "at 03:00 on Sunday"),
    (("0", "3", "1,5", "*", "*"), "at 03:00 on Monday and Friday"),
    (("0", "3", "sat,sun", "*", "*"), "at 03:00 on Saturday and Sunday"),
    (("0", "9", "1-5", "*", "*"), "at 09:00, Monday to Friday"),
    (("0", "9", "mon-fri", "*", "*"), "at 09:00, Monday to Friday"),
    (("*/15", "9-17", "mon-fri", "*", "*"), "every 15 minutes from 09:00 to 17:45, Monday to Friday"),
    (("*", "9-10", "*", "*", "*"), "every minute from 09:00 to 10:59"),
    (("0", "0", "*", "1", "*"), "at 00:00 on the 1st of the month"),
    (("0", "0", "*", "1,15", "*"), "at 00:00 on the 1st and 15th of the month"),
    (("0", "0", "*", "2,3,22", "*"), "at 00:00 on the 2nd, 3rd and 22nd of the month"),
    (("0", "0", "*", "11,12,13", "*"), "at 00:00 on the 11th to 13th of the month"),
    (("0", "0", "*", "1-7", "*"), "at 00:00 on the 1st to 7th of the month"),
    (("0", "0", "*", "1", "1"), "at 00:00 on the 1st of the month in January"),
    (("0", "0", "*", "*", "jan,jul"), "at 00:00 in January and July"),
    (("0", "0", "*", "*", "*/3"), "at 00:00 in January, April, July and October"),
    (("0", "0", "*", "*", "6-8"), "at 00:00, June to August"),
    (("0", "12", "5", "*", "12"), "at 12:00 on Friday in December"),
    (("*", "*", "*", "*", "*", "*"), "every second"),
    (("*", "*", "*", "*", "*", "*/10"), "every 10 seconds"),
    (("*", "*", "1-5", "*", "*", "*/30"), "every 30 seconds, Monday to Friday"),
]

#: Shapes with no short, true sentence: the raw expression comes back as ``str(crontab)`` writes it.
AS_WRITTEN = [
    (("*/7", "*", "*", "*", "*"), "*/7 * * * *"),  # 7 does not divide the hour: not "every 7"
    (("0", "*/5", "*", "*", "*"), "0 */5 * * *"),
    (("1,2,3,4,5", "*", "*", "*", "*"), "1,2,3,4,5 * * * *"),
    (("5/10", "*", "*", "*", "*"), "5/10 * * * *"),  # six times an hour, not from :00
    (("*/15", "1,5,9", "*", "*", "*"), "*/15 1,5,9 * * *"),
    (("0", "3", "1", "1", "*"), "0 3 1 * 1"),  # both day fields: Celery ANDs them
    (("0", "3", "*", "1,3,5,7,9", "*"), "0 3 1,3,5,7,9 * *"),
    (("0", "3", "mon,wed,fri,sat,sun", "*", "*"), "0 3 * * mon,wed,fri,sat,sun"),
    (("0", "3", "*", "*", "1,3,5,8,10"), "0 3 * 1,3,5,8,10 *"),
    (("0", "3", "*", "*", "*", "30"), "0 3 * * *, second 30"),
    (("*", "*", "*", "*", "*", "*/7"), "* * * * *, second */7"),
    (("61", "*", "*", "*", "*"), "61 * * * *"),  # not a crontab at all
    (("0", "3", "funday", "*", "*"), "0 3 * * funday"),
]


@pytest.mark.parametrize(("fields", "words"), IN_WORDS, ids=[w for _f, w in IN_WORDS])
def test_a_simple_crontab_reads_in_words(fields, words):
    assert describe_crontab(*fields) == words


@pytest.mark.parametrize(("fields", "raw"), AS_WRITTEN, ids=[r for _f, r in AS_WRITTEN])
def test_a_crontab_without_a_simple_sentence_reads_as_written(fields, raw):
    assert describe_crontab(*fields) == raw


def test_the_defaults_are_every_minute():
    assert describe_crontab() == "every minute"


def test_fields_are_read_with_white_space_around_them():
    assert describe_crontab(" 0 ", " 3 ") == "at 03:00"
