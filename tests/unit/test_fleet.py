"""The parts of a fleet (children consuming): slots in shared memory, merged control answers,
the rate share, and the settling of a message whose run died with a sibling child."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from djtasks import App, conf, states
from djtasks.backends.base import ResultMeta
from djtasks.registry import TaskRegistry
from djtasks.worker.fleet import control as fleet_control
from djtasks.worker.fleet.orphans import ByTag, LostInSibling
from djtasks.worker.fleet.rates import SharedBuckets
from djtasks.worker.fleet.readahead import DELAY, ReadAhead
from djtasks.worker.fleet.slots import SLOT_SIZE, LostRequest, RunningSlots
from djtasks.worker.rate_limits import RateLimits
from djtasks.worker.worker import Worker
from tests.testapp import tasks


def request(task_id: str = "id-1", *, hard: float | None = None, args: tuple = (),
            acks_late: bool = True, reject_on_worker_lost: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        message=SimpleNamespace(id=task_id, task="tests.testapp.tasks.nap", args=args),
        time_limit=hard, soft_time_limit=None, acks_late=acks_late,
        reject_on_worker_lost=reject_on_worker_lost, acks_on_failure_or_timeout=True,
        label=f"nap[{task_id}]")


@pytest.fixture
def slots():
    made = RunningSlots(4)
    yield made
    made.close()


def test_a_slot_says_what_its_child_runs_until_cleared(slots):
    slots.write(1, request("a", hard=30), delivery_tag=41)
    running = slots.read(1)
    assert running.request.message.id == "a"
    assert running.delivery_tag == 41
    assert running.hard_deadline == pytest.approx(running.started + 30)
    assert slots.busy(1)
    assert not slots.busy(0)
    assert slots.hard_deadline(1) == running.hard_deadline
    slots.clear(1)
    assert slots.read(1) is None
    assert not slots.busy(1)
    assert slots.hard_deadline(1) is None


def test_a_slot_without_a_hard_limit_has_no_deadline(slots):
    slots.write(0, request("b"))
    assert slots.read(0).hard_deadline is None
    assert slots.hard_deadline(0) is None


def test_a_request_too_big_for_its_slot_keeps_its_id_and_name(slots):
    slots.write(2, request("big", args=("x" * SLOT_SIZE,)))
    assert slots.read(2).request == LostRequest("big", "tests.testapp.tasks.nap")


def test_the_children_share_the_slots_across_fork(slots):
    pid = os.fork()
    if pid == 0:  # the child writes; the parent reads
        slots.write(3, request("forked"))
        slots.set_counts(3, 7, 2)
        os._exit(0)
    os.waitpid(pid, 0)
    assert slots.read(3).request.message.id == "forked"
    assert slots.counts(3) == (7, 2)
    slots.reset(3)
    assert slots.read(3) is None
    assert slots.counts(3) == (0, 0)


class Answers:
    """A fleet whose children answer with canned replies."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.told: list[tuple[str, dict]] = []  # sent, not waited for
        self.asked: list[tuple[str, dict]] = []  # sent, and the answers waited for

    def gather(self, command, arguments, timeout=None):
        self.asked.append((command, arguments))
        return self.answers

    def tell_all(self, command, arguments):
        self.told.append((command, arguments))


def wired(fleet, **own):
    control = SimpleNamespace(handlers={
        "active": None, "reserved": None, "scheduled": None, "query_task": None,
        "revoked": own.get("revoked", lambda **_: ["parent-known"]),
        "stats": own.get("stats", lambda **_: {"pid": 1, "total": {}}),
        "revoke": lambda **kw: {"ok": "revoked"},
        **{name: (lambda **_: {"ok": "done"})
           for name in (*fleet_control.BROADCAST, *fleet_control.AWAITED)},
    })
    fleet_control.wire(control, fleet)
    return control.handlers


def test_lists_are_the_childrens_one_after_the_other_and_errors_are_left_out():
    handlers = wired(Answers([{"id": "a"}], {"error": "busy"}, [{"id": "b"}]))
    assert handlers["active"]() == [{"id": "a"}, {"id": "b"}]


def test_stats_sum_the_childrens_totals_into_the_parents_reply():
    handlers = wired(Answers({"total": {"add": 2, "mul": 1}}, {"total": {"add": 3}}))
    assert handlers["stats"]() == {"pid": 1, "total": {"add": 5, "mul": 1}}


def test_revoked_is_the_union_without_repeats():
    handlers = wired(Answers(["x", "parent-known"], ["y"]))
    assert handlers["revoked"]() == ["parent-known", "x", "y"]


def test_revoke_reaches_every_child_but_only_the_parent_terminates():
    fleet = Answers()
    handlers = wired(fleet)
    assert handlers["revoke"](task_id="t", terminate=True, signal="KILL") == {"ok": "revoked"}
    assert fleet.told == [("revoke", {"task_id": "t", "terminate": False, "signal": "KILL"})]


def test_a_change_the_parent_refuses_is_not_sent_to_the_children():
    fleet = Answers()
    control = SimpleNamespace(handlers={
        "active": None, "reserved": None, "scheduled": None, "query_task": None,
        "revoked": lambda **_: [], "stats": lambda **_: {}, "revoke": lambda **_: {},
        **{name: (lambda **_: {"error": "no such task"})
           for name in (*fleet_control.BROADCAST, *fleet_control.AWAITED)}})
    fleet_control.wire(control, fleet)
    assert control.handlers["rate_limit"](task_name="nope", rate_limit="1/s") == {"error": "no such task"}
    assert fleet.told == []
    assert fleet.asked == []


def test_a_rate_limit_is_answered_once_every_child_has_it():
    # A task sent right after the answer must find the limit in whichever child takes it.
    fleet = Answers({"ok": "done"}, {"ok": "done"})
    handlers = wired(fleet)
    assert handlers["rate_limit"](task_name="add", rate_limit="1/s") == {"ok": "done"}
    assert fleet.asked == [("rate_limit", {"task_name": "add", "rate_limit": "1/s"})]


def test_the_children_take_one_token_between_them():
    now = [100.0]
    table = SharedBuckets(children=2, clock=lambda: now[0])
    first, second = table.bucket("limited", 2.0), table.bucket("limited", 2.0)
    other = table.bucket("another", 2.0)
    assert first.take() is True
    assert second.take() is False, "the sibling's start took the token"
    assert other.take() is True, "each task name has a bucket of its own"
    assert second.wait_time() == pytest.approx(0.5)
    now[0] += 0.5
    assert second.take() is True
    assert first.take() is False


def test_the_children_share_a_bucket_across_fork():
    table = SharedBuckets(children=2)
    bucket = table.bucket("limited", 0.01)  # one start per 100 s
    pid = os.fork()
    if pid == 0:  # the child takes the token
        os._exit(0 if bucket.take() else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert bucket.take() is False, "the child's start counts in the parent"


def test_a_child_reports_the_whole_rate():
    registry = TaskRegistry()
    registry.register(tasks.clock_in_limited)  # 2/s
    pool = SimpleNamespace(free_slots=lambda: 1)
    limits = RateLimits(registry, pool, on_held=lambda held: None,
                        make_bucket=SharedBuckets(children=2).bucket)
    assert limits.rate_of(tasks.clock_in_limited.name) == pytest.approx(2.0)


class Message:
    def __init__(self, redelivered: bool = True) -> None:
        self.delivery_info = {"redelivered": redelivered}
        self.settled: list[str] = []

    def ack(self) -> None:
        self.settled.append("ack")

    def reject(self, requeue: bool) -> None:
        self.settled.append("requeue" if requeue else "reject")


class Store:
    def __init__(self, meta: ResultMeta | None = None) -> None:
        self.meta = meta

    def get_meta(self, task_id: str) -> ResultMeta:
        return self.meta or ResultMeta(task_id)


def test_a_message_back_from_a_dead_sibling_is_acknowledged_not_run_again(slots):
    slots.write(2, request("lost"))  # the dead child's slot still names it
    guard = LostInSibling(slots, 0, Store())
    message = Message()
    assert guard.before_reserve(request("lost"), message) is False
    assert message.settled == ["ack"]


def test_under_reject_on_worker_lost_it_runs_again(slots):
    slots.write(2, request("lost"))
    guard = LostInSibling(slots, 0, Store())
    message = Message()
    assert guard.before_reserve(request("lost", reject_on_worker_lost=True), message) is True
    assert message.settled == []


def test_past_its_hard_limit_it_is_settled_as_timed_out(slots):
    slots.write(2, request("slow", hard=0.01))
    time.sleep(0.02)
    guard = LostInSibling(slots, 0, Store())
    late = request("slow")
    late.acks_on_failure_or_timeout = False  # then a timed-out message goes back to the queue
    assert guard.before_reserve(late, Message()) is True


def test_once_the_slot_is_reused_the_recorded_failure_tells(slots):
    failure = ResultMeta("gone", status=states.FAILURE,
                         result={"exc_type": "WorkerLostError", "exc_message": "lost"})
    message = Message()
    assert LostInSibling(slots, 0, Store(failure)).before_reserve(request("gone"), message) is False
    assert message.settled == ["ack"]


def test_first_deliveries_and_early_acked_tasks_are_not_looked_at(slots):
    slots.write(2, request("x"))
    guard = LostInSibling(slots, 0, Store())
    assert guard.before_reserve(request("x"), Message(redelivered=False)) is True
    assert guard.before_reserve(request("x", acks_late=False), Message()) is True


def test_the_parent_settles_a_dead_childs_message_by_its_tag():
    settled = []
    channel = SimpleNamespace(qos=SimpleNamespace(
        ack=lambda tag: settled.append(("ack", tag)),
        reject=lambda tag, requeue: settled.append(("requeue" if requeue else "reject", tag))))
    acked, requeued = ByTag(lambda: channel, 7), ByTag(lambda: channel, 8)
    acked.ack()
    requeued.reject(requeue=True)
    assert settled == [("ack", 7), ("requeue", 8)]
    assert acked.acknowledged
    assert requeued.acknowledged


class Wire:
    """A stand-in for the child's broker connection that notes who reads it, and when."""

    def __init__(self) -> None:
        self.reads: list[float] = []  # the monotonic time each read started

    def drain_events(self, timeout: float) -> None:
        self.reads.append(time.monotonic())
        time.sleep(timeout)
        raise TimeoutError


def test_read_ahead_reads_only_while_a_long_task_runs_and_never_after_it():
    wire = Wire()
    reader = ReadAhead(SimpleNamespace(connection=wire))
    run = reader.around(lambda seconds: time.sleep(seconds) or seconds)
    reader.start()
    try:
        assert [run(0.001) for _ in range(50)] == [0.001] * 50
        assert wire.reads == []  # tasks shorter than DELAY: the connection stays the task thread's
        assert run(4 * DELAY) == 4 * DELAY
        ended = time.monotonic()
        time.sleep(2 * DELAY)
    finally:
        reader.stop()
    assert wire.reads, "a task past DELAY: what the broker sent meanwhile is read"
    assert max(wire.reads) < ended, "a read started after the task's thread took the connection back"


def test_read_ahead_is_for_rabbitmq_only():
    assert ReadAhead.applies("amqp://guest:guest@127.0.0.1:5672//")
    assert not ReadAhead.applies("redis://127.0.0.1:6379/0")
    assert not ReadAhead.applies("django://default")


def fleet_app(**settings) -> App:
    return App(conf.load({"broker_url": "memory://", **settings}, {}))


def test_autoscale_has_the_parent_feed_the_pool_whatever_the_setting_says():
    # The autoscaler reads the books of a parent that feeds its pool; the setting gives way.
    worker = Worker(fleet_app(worker_consume_in_children=True), pool="prefork", autoscale=(3, 1))
    assert worker.fleet is None
    assert type(worker.pool).__name__ == "PreforkPool"


def test_autoscale_and_consume_in_children_asked_for_together_are_refused():
    with pytest.raises(ValueError, match="autoscale: not supported with consume_in_children"):
        Worker(fleet_app(), pool="prefork", autoscale=(3, 1), consume_in_children=True)
