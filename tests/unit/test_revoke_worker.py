"""A revoked task id is skipped by the worker that receives it, and its canvas fails cleanly."""

from __future__ import annotations

import pytest

import djtasks
from djtasks import states
from djtasks.canvas import chain, chord, group
from djtasks.exceptions import ChordError, TaskRevokedError
from djtasks.worker.revocations import SAFETY_LOOK_INTERVAL, Revocations
from tests.testapp import tasks
from tests.unit.memory_broker import run_queued_tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("memory_broker")]


def test_a_revoked_task_is_not_run_and_reads_revoked(tmp_path):
    runs = tmp_path / "runs.txt"
    result = tasks.record.delay(str(runs), "x")
    result.revoke()
    run_queued_tasks()
    assert result.state == states.REVOKED
    with pytest.raises(TaskRevokedError, match="revoked"):
        result.get(timeout=1)
    assert not runs.exists()


def test_revoke_by_id_before_the_message_is_sent():
    djtasks.app.control.revoke("known-in-advance")
    result = tasks.add.apply_async((1, 1), task_id="known-in-advance")
    run_queued_tasks()
    assert result.state == states.REVOKED


def test_group_result_revoke_skips_every_member():
    result = group(tasks.add.s(i, i) for i in range(3))()
    result.revoke()
    run_queued_tasks()
    assert [member.state for member in result.results] == [states.REVOKED] * 3


def test_a_revoked_chord_header_task_fails_the_chord_instead_of_hanging():
    result = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.xsum.s())()
    result.parent.results[0].revoke()
    run_queued_tasks()
    with pytest.raises(ChordError, match="TaskRevokedError"):
        result.get(timeout=1)


def test_a_revoked_chain_step_fails_the_steps_after_it():
    result = chain(tasks.add.s(1, 1), tasks.add.s(1), tasks.add.s(1))()
    result.parent.parent.revoke()
    run_queued_tasks()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=1)


class _Store:
    def __init__(self, signals: list[bool] | None = None) -> None:
        self.ids: set[str] = set()
        self.looks = 0
        self.signals = signals  # None: a store that cannot tell (SQLite)
        self.fail_next_look = False

    def revoked_since(self, since):
        self.looks += 1
        if self.fail_next_look:
            self.fail_next_look = False
            raise OSError("database away")
        return set(self.ids), None

    def revocations_changed(self):
        return None if self.signals is None else self.signals.pop(0)


def test_revocations_look_again_only_after_a_message_arrived():
    store, now = _Store(), [0.0]
    known = Revocations(store, keep_for=60, clock=lambda: now[0])
    assert "a" not in known
    assert store.looks == 1
    store.ids.add("a")
    assert "a" not in known, "no message since the last look: memory answers"
    known.message_received()
    assert "a" not in known, "looked less than MIN_LOOK_INTERVAL ago: memory answers"
    now[0] = 0.05
    assert "a" in known
    assert store.looks == 2
    now[0] = 61.0
    known.message_received()
    store.ids.clear()
    assert "a" not in known, "forgotten after keep_for, as the store forgets it"


def test_with_a_signalling_store_the_worker_looks_only_after_a_signal():
    store, now = _Store(signals=[True, False, False, True]), [0.0]
    known = Revocations(store, keep_for=60, clock=lambda: now[0])
    assert "a" not in known
    assert store.looks == 1, "the first poll of a new signal always looks"
    store.ids.add("a")
    for moment in (1.0, 2.0):  # messages arrive, no signal: no look, however late
        now[0] = moment
        known.message_received()
        assert "a" not in known
    assert store.looks == 1
    now[0] = 3.0
    known.message_received()
    assert "a" in known, "the revoke's NOTIFY came: look"
    assert store.looks == 2


def test_a_signal_is_kept_until_a_look_succeeds():
    store, now = _Store(signals=[True, True, False]), [0.0]
    known = Revocations(store, keep_for=60, clock=lambda: now[0])
    assert "a" not in known
    store.ids.add("a")
    store.fail_next_look = True
    now[0] = 1.0
    known.message_received()
    assert "a" not in known, "the signal came, but the look failed"
    now[0] = 2.0
    known.message_received()
    assert "a" in known, "looked again: the signal was kept"


def test_without_a_signal_a_look_is_made_every_safety_interval():
    store, now = _Store(signals=[True] + [False] * 10), [0.0]
    known = Revocations(store, keep_for=60, clock=lambda: now[0])
    assert "a" not in known
    store.ids.add("a")
    now[0] = SAFETY_LOOK_INTERVAL
    known.message_received()
    assert "a" in known, "a lost NOTIFY costs at most SAFETY_LOOK_INTERVAL"
