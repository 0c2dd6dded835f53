"""The worker's features as hook objects: order, failures, options (worker/features/)."""

from __future__ import annotations

import logging
import pickle
from typing import ClassVar

import pytest
from django.db import OperationalError
from django.test import override_settings

from djtasks import shared_task, states
from djtasks.protocol import TaskMessage
from djtasks.task import FEATURE_OPTIONS, TASK_OPTIONS, Request, build_task, trace
from djtasks.task import Recorder as TraceRecorder
from djtasks.testing import InProcessWorker
from djtasks.worker import features
from djtasks.worker.features import Feature, Features
from djtasks.worker.pools.base import Outcome
from djtasks.worker.settlement import Fate
from tests.testapp import tasks


class Recording(Feature):
    """Write each hook call to a shared list, as (name, hook)."""

    def __init__(self, name: str, calls: list, start: bool = True) -> None:
        self.name, self.calls, self.start = name, calls, start

    def before_reserve(self, job, message):
        self.calls.append((self.name, "before_reserve"))
        return True

    def before_start(self, job, message):
        self.calls.append((self.name, "before_start"))
        return self.start

    def on_running(self, job, message):
        self.calls.append((self.name, "on_running"))

    def after_start(self, job, message):
        self.calls.append((self.name, "after_start"))

    def after_complete(self, job, outcome, fate):
        self.calls.append((self.name, "after_complete"))


class Raising(Feature):
    def before_start(self, job, message):
        raise RuntimeError("broken before_start")

    def after_complete(self, job, outcome, fate):
        raise RuntimeError("broken after_complete")


def test_before_hooks_run_in_order_and_after_hooks_in_reverse():
    calls: list = []
    hooks = Features([Recording("a", calls), Recording("b", calls), Recording("c", calls)])
    assert hooks.before_start("job", "message") is True
    hooks.after_start("job", "message")
    hooks.after_complete("job", Outcome(), Fate.ACK)
    assert calls == [("a", "before_start"), ("b", "before_start"), ("c", "before_start"),
                     ("c", "after_start"), ("b", "after_start"), ("a", "after_start"),
                     ("c", "after_complete"), ("b", "after_complete"), ("a", "after_complete")]


def test_a_feature_that_settles_the_job_stops_the_ones_after_it():
    calls: list = []
    hooks = Features([Recording("a", calls), Recording("b", calls, start=False),
                      Recording("c", calls)])
    assert hooks.before_start("job", "message") is False
    assert calls == [("a", "before_start"), ("b", "before_start")]


def test_a_failing_hook_is_logged_and_the_others_still_run(caplog):
    calls: list = []
    hooks = Features([Recording("a", calls), Raising(), Recording("c", calls)])
    with caplog.at_level(logging.ERROR, logger="djtasks.worker"):
        assert hooks.before_start("job", "message") is True  # as if the hook were not there
        hooks.after_complete("job", Outcome(), Fate.ACK)
    assert calls == [("a", "before_start"), ("c", "before_start"),
                     ("c", "after_complete"), ("a", "after_complete")]
    logged = [record.getMessage() for record in caplog.records]
    assert any("Raising.before_start raised for job" in line for line in logged)
    assert any("Raising.after_complete raised for job" in line for line in logged)


def test_a_database_error_goes_up_to_the_consumers_loop():
    class Outage(Feature):
        def after_complete(self, job, outcome, fate):
            raise OperationalError("database is away")

    with pytest.raises(OperationalError):
        Features([Outage()]).after_complete("job", Outcome(), Fate.ACK)


def test_only_features_that_override_a_hook_are_called_for_it():
    class Silent(Feature):
        pass

    hooks = Features([Silent(), Recording("a", [])])
    assert [hook.__self__ for hook in hooks._hooked["before_start"]] == [hooks.all[1]]
    assert hooks._hooked["before_job"] == []


def test_request_fields_merge_what_each_feature_decides():
    class Limits(Feature):
        def before_job(self, message, task, settings):
            return {"time_limit": 5}

    class Flags(Feature):
        def before_job(self, message, task, settings):
            return {"acks_late": True}

    assert Features([Limits(), Flags()]).request_fields(None, None, None) == {
        "time_limit": 5, "acks_late": True}


def test_task_accepts_the_union_of_the_options_the_features_own():
    assert FEATURE_OPTIONS == features.OPTIONS
    assert TASK_OPTIONS >= features.OPTIONS
    # Each option has one owner: two features giving one option a meaning would clash.
    owned = [option for feature in features.FEATURES for option in feature.options]
    assert len(owned) == len(set(owned))


@pytest.mark.parametrize(("typo", "meant"), [("rate_limt", "rate_limit"),
                                              ("soft_timelimit", "soft_time_limit"),
                                              ("acks_lat", "acks_late")])
def test_a_mistyped_option_names_the_closest_valid_one(typo, meant):
    with pytest.raises(TypeError, match=f"unexpected option {typo!r}; did you mean {meant!r}"):
        build_task(lambda: None, **{typo: 1})


@pytest.mark.django_db
def test_a_failing_feature_does_not_stop_the_worker(caplog):
    calls: list = []
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "testing"}):
        result = tasks.add.delay(2, 3)
        with caplog.at_level(logging.ERROR, logger="djtasks.worker"), \
                InProcessWorker(features=[Raising(), Recording("mine", calls)]) as worker:
            worker.join()
        assert result.get(timeout=1) == 5
        assert result.state == states.SUCCESS
    # Its own features come after the worker's: they are asked last before, first after.
    assert calls == [("mine", "before_reserve"), ("mine", "before_start"), ("mine", "on_running"),
                     ("mine", "after_start"), ("mine", "after_complete")]
    assert any("Raising.after_complete raised" in record.getMessage() for record in caplog.records)


class Watching(Feature):
    """Note, as each hook is called, whether the task body has run yet."""

    def __init__(self) -> None:
        self.seen: dict[str, bool] = {}

    def on_running(self, job, message):
        self.seen["on_running"] = bool(BODY_RAN)

    def after_start(self, job, message):
        self.seen["after_start"] = bool(BODY_RAN)


BODY_RAN: list = []


@shared_task(name="tests.unit.test_features.note_run")
def note_run():
    BODY_RAN.append(True)


@pytest.mark.django_db
def test_on_running_comes_before_the_solo_pool_runs_the_body():
    # The solo pool (and so each consuming child) runs the task inside submit(): what is
    # said while a task runs (task-started, stats totals) must come before that, not after.
    BODY_RAN.clear()
    watching = Watching()
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "testing"}):
        result = note_run.delay()
        with InProcessWorker(features=[watching]) as worker:
            worker.join()
        result.get(timeout=1)
    assert watching.seen == {"on_running": False, "after_start": True}


class NotingRequest(Request):
    """A task's own Request class: its hooks run in the consumer once the run is over."""

    ended: ClassVar[list] = []

    def on_success(self, failed__retval__runtime, **kwargs):
        NotingRequest.ended.append((self.id, failed__retval__runtime[1]))


@shared_task(bind=True, Request=NotingRequest, name="tests.unit.test_features.introspect")
def introspect(self):
    request = self.request
    return [type(request).__name__, request.id, request.hostname, request.called_directly,
            request.is_eager, dict(request.delivery_info).get("routing_key")]


@pytest.mark.django_db
def test_the_body_sees_the_request_the_worker_built_and_its_hooks_run():
    NotingRequest.ended.clear()
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "testing"}):
        result = introspect.delay()
        with InProcessWorker() as worker:
            worker.join()
        assert result.get(timeout=1) == ["NotingRequest", result.id, "testing@localhost", False,
                                         False, "testing"]
    assert [task_id for task_id, _ in NotingRequest.ended] == [result.id]


def test_an_eager_run_goes_through_the_same_trace_with_an_eager_request():
    outcome = introspect.apply().get()
    assert outcome[0] == "Request"  # the plain class: Request hooks are the worker's
    assert outcome[3:5] == [False, True]


class Refusing(TraceRecorder):
    """A recorder whose follow-up or store breaks, as a broker or a database may."""

    def __init__(self, where: str) -> None:
        self.where = where

    def follow_up(self, value):
        if self.where == "follow_up":
            raise RuntimeError("cannot send the callbacks")

    def succeeded(self, value, runtime):
        if self.where == "store":
            raise OperationalError("cannot store")
        return None


def test_a_failed_follow_up_fails_the_run_but_a_failed_store_goes_up_to_the_member():
    task = build_task(lambda: 4, name="tests.unit.test_features.four")
    request = Request(TaskMessage(id="t4", task=task.name))
    ending = trace(task, request, Refusing("follow_up"))
    assert ending.state == states.FAILURE
    assert isinstance(ending.value, RuntimeError)
    with pytest.raises(OperationalError):  # the member reports it; the main process records it
        trace(task, request, Refusing("store"))
    assert trace(task, request).state == states.SUCCESS


@pytest.mark.django_db
def test_the_consumer_runs_the_features_in_the_documented_order():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "testing"}):
        worker = InProcessWorker()
        built = [type(feature) for feature in worker.consumer.features]
    assert built[:len(features.FEATURES)] == list(features.FEATURES)


class Annotated(Request):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.note = "kept"


def test_a_request_crosses_to_a_pool_member_whole_with_its_own_children():
    request = Annotated(TaskMessage(id="t5", task="x", args=(1,)), hostname="h",
                        delivery_info={"routing_key": "q"}, acks_late=True, time_limit=3,
                        received=2.0)
    request.children.append("sent-before")
    copy = pickle.loads(pickle.dumps(request))
    assert type(copy) is Annotated
    assert (copy.message, copy.hostname, copy.delivery_info, copy.acks_late, copy.time_limit,
            copy.received, copy.note) == (request.message, "h", {"routing_key": "q"}, True, 3,
                                          2.0, "kept")
    assert copy.children == []
    plain = pickle.loads(pickle.dumps(Request(TaskMessage(id="t6", task="x"))))
    assert (plain.id, plain.children, plain.called_directly) == ("t6", [], False)
