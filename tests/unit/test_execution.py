"""Execution logic without a worker: backoff, annotations, the retry call, eager runs, handlers,
signals and the task logger (issue 4, exec)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from django.test import override_settings

import djtasks
from djtasks import App, conf, signals, states
from djtasks.exceptions import Ignore, ImproperlyConfigured, MaxRetriesExceededError, Retry
from djtasks.protocol import TaskMessage
from djtasks.task import Request, Task, build_task, retry_call_options
from djtasks.utils.annotations import annotation_options
from djtasks.utils.log import TaskFilter, get_task_logger, task_log_context
from djtasks.utils.retries import backoff_delay, backoff_factor


class BoomError(Exception):
    pass


# -- backoff -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("retries", "expected"), [(0, 2), (1, 4), (2, 8), (3, 10), (50, 10)])
def test_backoff_doubles_up_to_the_cap(retries, expected):
    assert backoff_delay(2, retries, maximum=10, jitter=False) == expected


def test_backoff_full_jitter_draws_between_zero_and_the_delay():
    drawn = []
    assert backoff_delay(1, 3, 600, jitter=True, randint=lambda a, b: drawn.append((a, b)) or b) == 8
    assert drawn == [(0, 8)]


def test_backoff_without_a_cap_and_true_as_factor():
    assert backoff_factor(True) == 1
    assert backoff_factor(3) == 3
    assert backoff_delay(backoff_factor(True), 4, None, jitter=False) == 16


@pytest.mark.parametrize("factor", [-1, "2", None])
def test_backoff_refuses_a_bad_factor(factor):
    with pytest.raises(ValueError, match="retry_backoff: expected"):
        backoff_delay(factor, 0, None, jitter=False)


# -- annotations ---------------------------------------------------------------------------------
class Named:
    def __init__(self, name):
        self.name = name


def test_annotations_by_star_glob_and_name_the_more_specific_wins():
    annotations = {"*": {"max_retries": 1, "rate_limit": "1/s"}, "shop.*": {"max_retries": 2},
                   "shop.charge": {"max_retries": 3}}
    assert annotation_options(annotations, Named("shop.charge")) == {"max_retries": 3, "rate_limit": "1/s"}
    assert annotation_options(annotations, Named("shop.refund")) == {"max_retries": 2, "rate_limit": "1/s"}
    assert annotation_options(annotations, Named("mail.send")) == {"max_retries": 1, "rate_limit": "1/s"}


def test_annotations_callables_objects_and_lists_later_wins():
    class ByPrefix:
        def annotate(self, task):
            return {"acks_late": True} if task.name.startswith("shop.") else None

    annotations = [{"*": {"max_retries": 1}}, lambda task: {"max_retries": 7}, ByPrefix()]
    assert annotation_options(annotations, Named("shop.x")) == {"max_retries": 7, "acks_late": True}
    assert annotation_options(annotations[:2], Named("mail.x")) == {"max_retries": 7}
    assert annotation_options(None, Named("x")) == {}


def test_annotations_refuse_what_is_not_an_annotation():
    with pytest.raises(TypeError, match="expected a dict, a callable"):
        annotation_options([42], Named("x"))
    with pytest.raises(TypeError, match="must return a dict or None"):
        annotation_options(lambda task: "fast", Named("x"))
    with pytest.raises(TypeError, match=r"task_annotations\['x'\]: expected a dict of options"):
        annotation_options({"x": 3}, Named("x"))


def _fn(x):
    return x


def test_an_app_keeps_an_annotated_copy_and_the_task_class_is_untouched():
    task = build_task(_fn, name="unit.annotated", max_retries=4)
    app = App(conf.load({"task_annotations": {"unit.*": {"max_retries": 9, "rate_limit": "5/m"}}}, {}))
    try:
        app.register(task)
        copy = app.tasks["unit.annotated"]
        assert copy is not task
        assert isinstance(copy, type(task))
        assert (copy.max_retries, copy.rate_limit) == (9, "5/m")
        assert (task.max_retries, task.rate_limit) == (4, None)
        assert app.registered(task) is copy
    finally:
        app.close()


def test_an_annotation_with_an_unknown_option_names_it():
    # Found when the app is built: "*" reaches the built-in tasks too.
    with pytest.raises(ImproperlyConfigured, match="did you mean 'max_retries'"):
        App(conf.load({"task_annotations": {"*": {"max_retrys": 1}}}, {}))


# -- the retry call ------------------------------------------------------------------------------
def test_retry_call_options_send_the_same_task_again_where_it_came_from():
    message = TaskMessage(
        id="t1", task="x", retries=2, root_id="r", parent_id="p", group="g", group_index=1,
        chain=[{"task": "next"}], callbacks=[{"task": "cb"}], headers={"h": 1},
        expires=datetime(2030, 1, 1, tzinfo=UTC), time_limit=10, soft_time_limit=5)
    request = Request(message, delivery_info={"routing_key": "q", "exchange": "", "priority": 3},
                      ignore_result=True)
    options = retry_call_options(request)
    assert options == {
        "task_id": "t1", "retries": 3, "add_to_parent": False, "link": [{"task": "cb"}],
        "chain": [{"task": "next"}], "group_id": "g", "group_index": 1, "parent_id": "p",
        "root_id": "r", "headers": {"h": 1}, "time_limit": 10, "soft_time_limit": 5,
        "expires": datetime(2030, 1, 1, tzinfo=UTC), "priority": 3, "ignore_result": True,
        "queue": "q", "routing_key": "q"}


# -- eager runs ----------------------------------------------------------------------------------
calls: list[tuple] = []


class Recording(Task):
    def on_success(self, retval, task_id, args, kwargs):
        calls.append(("on_success", retval))

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        calls.append(("on_failure", type(exc).__name__, "BoomError" in einfo.traceback))

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        calls.append(("on_retry", repr(exc)))

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        calls.append(("after_return", status))


def _flaky(self, until):
    calls.append(("run", self.request.retries, self.request.is_eager))
    if self.request.retries < until:
        raise self.retry(exc=BoomError(self.request.retries), countdown=60)
    return self.request.retries


flaky = build_task(_flaky, name="unit.flaky", bind=True, base=Recording, max_retries=3)


def _auto(self):
    calls.append(("run", self.request.retries))
    if self.request.retries < 2:
        raise BoomError("again")
    return "done"


auto = build_task(_auto, name="unit.auto", bind=True, base=Recording, autoretry_for=(BoomError,),
                  retry_backoff=True, retry_jitter=False)


def _ignored():
    raise Ignore()


ignored = build_task(_ignored, name="unit.ignored")


@pytest.fixture(autouse=True)
def _clear_calls():
    calls.clear()


def test_eager_retry_runs_again_at_once_until_success_with_handlers():
    result = flaky.apply((2,))
    assert result.get() == 2
    assert result.retries == 2
    assert calls == [
        ("run", 0, True), ("on_retry", "BoomError(0)"), ("after_return", states.RETRY),
        ("run", 1, True), ("on_retry", "BoomError(1)"), ("after_return", states.RETRY),
        ("run", 2, True), ("on_success", 2), ("after_return", states.SUCCESS)]


def test_eager_retry_past_max_retries_fails_with_the_reason():
    result = flaky.apply((9,))
    assert result.state == states.FAILURE
    with pytest.raises(BoomError):
        result.get()
    assert calls[-2:] == [("on_failure", "BoomError", True), ("after_return", states.FAILURE)]
    assert [c for c in calls if c[0] == "run"] == [("run", n, True) for n in range(4)]


def test_eager_autoretry_and_propagation():
    assert auto.apply().get() == "done"
    assert [c for c in calls if c[0] == "run"] == [("run", 0), ("run", 1), ("run", 2)]
    once = build_task(_auto, name="unit.auto_once", bind=True, autoretry_for=(BoomError,),
                      max_retries=0)
    with pytest.raises(BoomError, match="again"):
        once.apply(throw=True)


def test_eager_ignore_is_its_own_state():
    assert ignored.apply().state == states.IGNORED


def test_retry_called_directly_raises_the_reason():
    def direct(self):
        raise self.retry(exc=BoomError("direct"))

    task = build_task(direct, name="unit.direct", bind=True)
    with pytest.raises(BoomError, match="direct"):
        task()


def test_max_retries_exceeded_without_a_reason():
    def once(self):
        raise self.retry(max_retries=0)

    task = build_task(once, name="unit.once", bind=True)
    with pytest.raises(MaxRetriesExceededError, match=r"Can't retry unit\.once"):
        task.apply(throw=True)


def test_retry_without_throw_returns_the_retry():
    def soft(self):
        return self.retry(throw=False, countdown=5)

    task = build_task(soft, name="unit.soft", bind=True)
    # Eager: nothing is sent, and the returned Retry says when it would have run.
    value = task.apply().get()
    assert isinstance(value, Retry)
    assert value.when == 5


def test_always_eager_with_annotations_and_task_signals():
    seen = []

    def receiver(sender, **kwargs):
        seen.append((kwargs["signal"], kwargs.get("state")))

    for signal in (signals.task_prerun, signals.task_postrun, signals.task_success):
        signal.connect(receiver, weak=False, dispatch_uid=f"unit-{id(signal)}")
    try:
        with override_settings(DJTASKS={"task_always_eager": True,
                                        "task_annotations": {"unit.flaky": {"max_retries": 0}}}):
            djtasks.app.register(flaky)
            result = flaky.delay(1)
            assert result.state == states.FAILURE  # the annotation, not the decorator's 3
    finally:
        for signal in (signals.task_prerun, signals.task_postrun, signals.task_success):
            signal.disconnect(dispatch_uid=f"unit-{id(signal)}")
    assert seen == [(signals.task_prerun, None), (signals.task_postrun, states.FAILURE)]


# -- the task logger -----------------------------------------------------------------------------
def test_task_logger_records_carry_the_task_name_and_id(caplog):
    logger = get_task_logger("unit.tasks.module")
    assert logger.parent is logging.getLogger("djtasks.task")
    with caplog.at_level(logging.INFO, logger="djtasks.task"):
        with task_log_context("unit.task", "id-1"):
            logger.info("inside")
        logger.info("outside")
    inside, outside = caplog.records[-2:]
    assert (inside.task_name, inside.task_id) == ("unit.task", "id-1")
    assert (outside.task_name, outside.task_id) == ("???", "???")
    formatted = logging.Formatter("[%(task_name)s(%(task_id)s)] %(message)s").format(inside)
    assert formatted == "[unit.task(id-1)] inside"


def test_task_filter_fills_in_any_record():
    record = logging.LogRecord("other", logging.INFO, __file__, 1, "x", (), None)
    assert TaskFilter().filter(record)
    assert record.task_name == "???"
