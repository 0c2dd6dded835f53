"""A new user's SQLite, as ``startproject`` writes it: several djtasks processes on one file.

No WAL, no busy timeout, no immediate transactions in DATABASES: runworker and runbeat
prepare their own connections (djtasks/backends/sqlite.py) and wait out the locks that
remain (djtasks/backends/outages.py), so no process dies of "database is locked".
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.beat_runs import each_run_sent_once, runs
from tests.integration.conftest import ROOT, command_environment, only_brokers

pytestmark = [pytest.mark.integration, only_brokers("django-sqlite")]

BEATS = 3
ROUNDS = 10
PAST_START = r"beat: \d+ entries from settings and code written to the database"


@pytest.fixture(scope="module")
def plain_db(tmp_path_factory) -> Path:
    """An SQLite file migrated with the plain settings."""
    return migrated(tmp_path_factory.mktemp("plain") / "db.sqlite3")


def migrated(path: Path) -> Path:
    """Migrate an SQLite file at ``path`` with the plain settings."""
    done = subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput", "-v0"],
                          cwd=ROOT, env=plain_env(path), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return path


def plain_env(path: Path, **extra: str) -> dict[str, str]:
    return {"DJANGO_SETTINGS_MODULE": "tests.plain_sqlite_settings",
            "DJTASKS_TESTS_PLAIN_SQLITE_PATH": str(path), **extra}


def beat_env(path: Path, stamps: Path) -> dict[str, str]:
    schedule = {"every-second": {"task": "tests.testapp.tasks.stamp", "schedule": 1.0,
                                 "args": [str(stamps)]}}
    return plain_env(path, DJTASKS_BEAT_SCHEDULE=json.dumps(schedule),
                     DJTASKS_BEAT_MAX_LOOP_INTERVAL="1", DJTASKS_BEAT_LEASE_TIMEOUT="3")


def start_beats(process_factory, env: dict[str, str]) -> list:
    """Start BEATS runbeat processes at once; return them once each is past its start."""
    beats = [process_factory("runbeat", env=env) for _ in range(BEATS)]
    for beat in beats:
        beat.wait_for_line(PAST_START, timeout=60)
    return beats


def test_beats_started_together_all_live_and_send_each_run_once(process_factory, plain_db, tmp_path):
    process_factory("runworker", "-c", "2", env=plain_env(plain_db), ready=r" ready\.$")
    # Ten starts of three beats at the same instant: a start-up race that happens one time
    # in ten shows here. Each beat must get past writing the schedule and still be running.
    first_stamps = tmp_path / "rounds.txt"
    started = []
    for _ in range(ROUNDS):
        beats = start_beats(process_factory, beat_env(plain_db, first_stamps))
        for beat in beats:
            assert beat.process.poll() is None, "a beat died at start:\n" + beat.log()
            assert beat.stop() == 0, beat.log()
        started += beats
    each_run_sent_once(first_stamps, *started)
    # Then twenty seconds of three beats and a worker on the one file.
    stamps = tmp_path / "stamps.txt"
    beats = start_beats(process_factory, beat_env(plain_db, stamps))
    time.sleep(20)  # the behaviour under test is twenty seconds of beats running together
    for beat in beats:
        assert beat.process.poll() is None, "a beat died:\n" + beat.log()
    for beat in beats:
        assert beat.stop() == 0, beat.log()
        assert "Traceback" not in beat.log()
    each_run_sent_once(stamps, *beats)
    assert 15 <= len(runs(stamps)) <= 23, f"{len(runs(stamps))} runs in 20 s of a 1 s schedule"


def test_the_worker_switches_the_file_to_wal(process_factory, tmp_path):
    path = migrated(tmp_path / "fresh.sqlite3")

    def journal_mode() -> str:
        with sqlite3.connect(path) as connection:
            return connection.execute("PRAGMA journal_mode").fetchone()[0]

    assert journal_mode() == "delete"  # as migrate leaves it
    process_factory("runworker", "-c", "1", env=plain_env(path), ready=r" ready\.$")
    assert journal_mode() == "wal"


@pytest.mark.parametrize("command", [["runbeat"], ["runworker"], ["runworker", "-B", "-P", "threads"]],
                         ids=["runbeat", "runworker", "runworker-B"])
def test_a_database_that_stays_broken_stops_the_process_with_a_clear_message(command, tmp_path,
                                                                            broker, queue_name):
    # Never migrated: every query fails with "no such table", which no wait cures.
    env = plain_env(tmp_path / "empty.sqlite3", DJTASKS_DATABASE_RETRY_TIMEOUT="1")
    done = subprocess.run([sys.executable, "-m", "django", *command, "-l", "INFO"], cwd=ROOT,
                          env=command_environment(broker, queue_name, env), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "stopping:" in done.stderr, done.stderr
    assert "database_retry_timeout" in done.stderr
    assert "no such table" in done.stderr
    assert "Traceback" not in done.stderr
    # One line when the trouble began, one when the process gave up: not one per retry.
    # Per process: consuming children meet the outage each on their own connection.
    began = [re.search(r"/([\w-]+)\]", line) for line in done.stderr.splitlines()
             if "database error" in line]
    senders = [match.group(1) for match in began if match]
    assert len(senders) == len(began) == len(set(senders)), done.stderr
    assert "MainProcess" in senders, done.stderr
