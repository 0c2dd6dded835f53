"""The benchmark's pure parts: --chord sizes, /proc parsing, and the new rows' tables."""

from __future__ import annotations

import argparse

import pytest

from bench.__main__ import sizes
from bench.memory import field_kib, session_of
from bench.report import Case, chord_table, growth_table, memory_table, threads_table

TITLES = {"rabbitmq": "RabbitMQ (amqp://)"}
SYSTEM_TITLES = {"djtasks": "djtasks", "celery-djangodb": "Celery + django-celery-results"}


def test_chord_sizes_are_a_comma_separated_list_without_zeros():
    assert sizes("1000,10000") == (1000, 10000)
    assert sizes("1000") == (1000,)
    assert sizes("0") == ()


@pytest.mark.parametrize("text", ["ten", "1000,-1"])
def test_chord_sizes_refuse_what_is_not_a_count(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected sizes"):
        sizes(text)


def test_session_is_counted_from_the_last_parenthesis_of_the_command_name():
    stat = "4242 (celery: (worker) x) S 1 4242 4240 0 -1 4194560"
    assert session_of(stat) == 4240


def test_field_kib_reads_one_line_of_a_proc_file():
    rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  163400 kB\nPss:   64900 kB\n"
    assert field_kib(rollup, "Pss") == 64900
    assert field_kib(rollup, "Rss") == 163400
    with pytest.raises(ValueError, match="expected a 'VmRSS' line"):
        field_kib(rollup, "VmRSS")


def test_chord_table_has_a_row_per_size_and_marks_a_missing_one():
    case = Case("rabbitmq", "djtasks", chords=[
        {"n": 1000, "seconds": 2.0, "rate": 500.0, "sent": 0.25, "busy": False},
        {"n": 10000, "note": "failed"},
    ])
    lines = chord_table([case], TITLES, SYSTEM_TITLES, [1000, 10000]).splitlines()
    assert lines[2] == "| RabbitMQ (amqp://) | djtasks | 1,000 | 500 | 2.00 | 0.25 |"
    assert lines[3] == "|  | djtasks | 10,000 | failed |  |  |"


def test_chord_table_gives_a_system_without_the_broker_one_row():
    case = Case("rabbitmq", "djtasks", note="n/a")
    lines = chord_table([case], TITLES, SYSTEM_TITLES, [1000, 10000]).splitlines()
    assert lines[2:] == ["| RabbitMQ (amqp://) | djtasks | n/a | n/a | n/a | n/a |"]


def test_rows_of_a_system_without_them_say_not_applicable():
    case = Case("rabbitmq", "celery-djangodb", threads={"note": "n/a"}, memory={"note": "n/a"})
    assert threads_table([case], TITLES, SYSTEM_TITLES).splitlines()[2].endswith("| n/a | n/a |")
    assert memory_table([case], TITLES, SYSTEM_TITLES).splitlines()[2].count("n/a") == 5


def test_memory_table_shows_growth_of_all_processes_and_of_the_main_one():
    case = Case("rabbitmq", "djtasks", memory={
        "pss_idle": 64.9, "rss_start": 163.4, "rss_end": 165.9, "rss_growth": 2.5,
        "main_rss_start": 80.0, "main_rss_end": 81.0})
    row = memory_table([case], TITLES, SYSTEM_TITLES).splitlines()[2]
    assert row == "| RabbitMQ (amqp://) | djtasks | 64.9 | 163.4 | 165.9 | +2.5 | +1.0 |"


def test_growth_table_gives_the_drain_ratios():
    empty = {"enqueue_ignored": 1500.0, "enqueue_stored": 1400.0, "drain_ignored": 1000.0,
             "drain_stored": 800.0}
    filled = {**empty, "drain_ignored": 900.0, "drain_stored": 600.0, "busy": True}
    growth = {"results": 1_000_000, "messages": 100_000, "empty": empty, "filled": filled,
              "ratio_off": 0.9, "ratio_on": 0.75}
    lines = growth_table(growth).splitlines()
    assert lines[3] == ("| 1,000,000 finished results, 100,000 waiting messages (busy) "
                        "| 1,500 | 1,400 | 900 | 600 |")
    assert lines[4] == "| drain, filled / empty | | | 0.90 | 0.75 |"


def test_json_keeps_the_first_chord_where_it_was():
    case = Case("rabbitmq", "djtasks", chords=[{"n": 1000, "rate": 1.0}, {"n": 10000, "rate": 2.0}])
    found = case.as_json()
    assert found["chord"] == {"n": 1000, "rate": 1.0}
    assert [chord["n"] for chord in found["chords"]] == [1000, 10000]
