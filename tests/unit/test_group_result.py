"""GroupResult against the database backend: states, get() order and waiting, save and restore."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from djtasks import AsyncResult, GroupResult, states
from djtasks.backends.base import ResultMeta, exception_to_dict
from djtasks.exceptions import TaskRevokedError
from djtasks.exceptions import TimeoutError as ResultTimeoutError
from djtasks.protocol import TaskMessage
from djtasks.result import EagerResult
from djtasks.task import Request, trace


class FirstError(Exception):
    pass


class SecondError(Exception):
    pass



def group_of(app, *ids, group_id="g"):
    return GroupResult(group_id, [app.AsyncResult(task_id) for task_id in ids], app=app)


def succeed(app, task_id, value):
    app.backend.store(task_id, states.SUCCESS, value)


def fail(app, task_id, exc):
    app.backend.store(task_id, states.FAILURE, exception_to_dict(exc))


def store_later(app, delay, task_id, value):
    """Play a worker in another thread: finish ``task_id`` after ``delay`` seconds."""
    def work():
        time.sleep(delay)
        try:
            succeed(app, task_id, value)
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


# -- a sequence of results ------------------------------------------------------------------------


def test_group_result_is_a_sequence_of_its_members(app):
    a, b = app.AsyncResult("a"), app.AsyncResult("b")
    group = GroupResult("g", [a, b], app=app)
    assert group.id == "g"
    assert group.results == [a, b]
    assert group.children == [a, b]
    assert len(group) == 2
    assert list(group) == [a, b]
    assert group[1] is b
    assert group.parent is None
    assert GroupResult("g", (a,), parent=b).parent is b
    assert repr(group) == "<GroupResult: g [a, b]>"


def test_group_results_are_equal_by_id_and_members(app):
    assert group_of(app, "a", "b") == group_of(app, "a", "b")
    assert group_of(app, "a", "b") != group_of(app, "b", "a")
    assert group_of(app, "a", "b") != group_of(app, "a", "b", group_id="other")
    assert group_of(app, "a") != "g"
    assert hash(group_of(app, "a")) == hash(group_of(app, "b"))
    assert GroupResult("g", [app.AsyncResult("a")]).app is not app  # the default app, made lazily


# -- states -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_states_of_a_group_in_progress(app, django_assert_num_queries):
    succeed(app, "ok", 1)
    fail(app, "bad", FirstError("x"))
    group = group_of(app, "ok", "bad", "pending")
    with django_assert_num_queries(1):
        assert not group.ready()
    assert group.waiting()
    assert not group.successful()
    assert group.failed()
    assert group.completed_count() == 1


@pytest.mark.django_db
def test_states_of_a_finished_group(app, django_assert_num_queries):
    succeed(app, "a", 1)
    succeed(app, "b", 2)
    group = group_of(app, "a", "b")
    with django_assert_num_queries(1):
        assert group.ready()
    with django_assert_num_queries(0):  # ready states are final: kept, not read again
        assert not group.waiting()
        assert group.successful()
        assert not group.failed()
        assert group.completed_count() == 2
        assert group[0].result == 1


@pytest.mark.django_db
def test_an_empty_group_is_ready_at_once(app, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert GroupResult("empty", [], app=app).ready()
        assert GroupResult("empty", [], app=app).get(timeout=1) == []


@pytest.mark.django_db
def test_eager_members_are_never_read(app, django_assert_num_queries):
    eager = EagerResult("e", ResultMeta("e", states.SUCCESS, 5), app=app)
    with django_assert_num_queries(0):
        assert GroupResult("g", [eager], app=app).get() == [5]


# -- get ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_returns_the_values_in_member_order_in_one_query(app, django_assert_num_queries):
    for task_id, value in (("c", 3), ("a", 1), ("b", {"two": 2})):
        succeed(app, task_id, value)
    group = group_of(app, "a", "b", "c", "a")
    with django_assert_num_queries(1):
        assert group.get(timeout=1) == [1, {"two": 2}, 3, 1]
    assert group.join(timeout=1) == [1, {"two": 2}, 3, 1]


@pytest.mark.django_db(transaction=True)
def test_get_waits_for_members_finishing_later(app):
    succeed(app, "a", 1)
    workers = [store_later(app, 0.05, "b", 2), store_later(app, 0.15, "c", 3)]
    try:
        assert group_of(app, "a", "b", "c").get(timeout=10, interval=0.02) == [1, 2, 3]
    finally:
        for worker in workers:
            worker.join()


@pytest.mark.django_db
def test_get_polls_one_query_a_round_with_backoff(app, monkeypatch):
    reads, pauses = [], []
    get_many = app.backend.get_many

    def counting_get_many(task_ids):
        reads.append(list(task_ids))
        if len(reads) == 4:
            succeed(app, "b", 2)
        return get_many(task_ids)

    monkeypatch.setattr(app.backend, "get_many", counting_get_many)
    monkeypatch.setattr(time, "sleep", pauses.append)
    succeed(app, "a", 1)
    assert group_of(app, "a", "b").get(interval=0.02) == [1, 2]
    assert reads == [["a", "b"], ["b"], ["b"], ["b"]]  # a ready member is not read again
    assert pauses == [0.005, 0.01, 0.02]


@pytest.mark.django_db
def test_get_times_out(app):
    succeed(app, "a", 1)
    with pytest.raises(ResultTimeoutError, match=r"group g not ready after 0\.05 s"):
        group_of(app, "a", "never").get(timeout=0.05, interval=0.01)


@pytest.mark.django_db
def test_get_raises_the_first_failure_in_member_order(app):
    fail(app, "second", SecondError("later member"))
    fail(app, "first", FirstError("earlier member"))
    succeed(app, "ok", 1)
    with pytest.raises(FirstError, match="earlier member"):
        group_of(app, "ok", "first", "second").get(timeout=1)


@pytest.mark.django_db
def test_get_raises_a_failure_without_waiting_for_later_members(app):
    fail(app, "bad", FirstError("no"))
    with pytest.raises(FirstError):
        group_of(app, "bad", "never").get(timeout=10)


@pytest.mark.django_db
def test_get_waits_for_earlier_members_before_raising(app):
    # Celery gets members one by one: a failure after a running member is not reached yet.
    fail(app, "bad", FirstError("no"))
    with pytest.raises(ResultTimeoutError):
        group_of(app, "never", "bad").get(timeout=0.05, interval=0.01)


@pytest.mark.django_db
def test_get_without_propagate_returns_the_exceptions(app):
    succeed(app, "ok", 1)
    fail(app, "bad", FirstError("kept"))
    app.backend.store("gone", states.REVOKED)
    values = group_of(app, "ok", "bad", "gone").get(timeout=1, propagate=False)
    assert values[0] == 1
    assert isinstance(values[1], FirstError)
    assert values[1].args == ("kept",)
    assert values[2] is None


@pytest.mark.django_db
def test_get_raises_for_a_revoked_member(app):
    app.backend.store("gone", states.REVOKED)
    with pytest.raises(TaskRevokedError, match="gone"):
        group_of(app, "gone").get(timeout=1)


def test_get_inside_a_running_task_is_refused(app):
    @app.task
    def waits_on_a_group():
        return group_of(app, "a").get(timeout=1)

    with pytest.raises(RuntimeError, match=r"Never call result\.get\(\) within a task"):
        raise trace(waits_on_a_group, Request(TaskMessage(id="x", task="t"))).value


# -- nested groups --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_nested_group_gives_a_nested_list(app, django_assert_num_queries):
    for task_id, value in (("a", 1), ("b", 2), ("c", 3)):
        succeed(app, task_id, value)
    inner = group_of(app, "b", "c", group_id="inner")
    outer = GroupResult("outer", [app.AsyncResult("a"), inner], app=app)
    assert repr(outer) == "<GroupResult: outer [a, inner]>"
    with django_assert_num_queries(1):
        assert outer.get(timeout=1) == [1, [2, 3]]
    assert outer.completed_count() == 2


@pytest.mark.django_db
def test_a_nested_group_counts_once_and_only_when_all_of_it_succeeded(app):
    succeed(app, "a", 1)
    succeed(app, "b", 2)
    fail(app, "c", FirstError("inner"))
    outer = GroupResult("outer", [app.AsyncResult("a"), group_of(app, "b", "c", group_id="inner")], app=app)
    assert outer.ready()
    assert outer.completed_count() == 1
    assert outer.failed()
    assert not outer.successful()
    with pytest.raises(FirstError, match="inner"):
        outer.get(timeout=1)
    assert not GroupResult("o", [group_of(app, "a", "pending")], app=app).ready()


# -- revoke, save, restore, forget ----------------------------------------------------------------


@pytest.mark.django_db
def test_revoke_revokes_every_task_in_one_call(app, monkeypatch):
    calls = []
    revoke = app.backend.revoke
    monkeypatch.setattr(app.backend, "revoke", lambda ids, expires: calls.append(ids) or revoke(ids, expires))
    outer = GroupResult("outer", [app.AsyncResult("a"), group_of(app, "b", "c", group_id="inner")], app=app)
    outer.revoke()
    assert calls == [["a", "b", "c"]]
    assert app.backend.revoked(["a", "b", "c", "d"]) == {"a", "b", "c"}


@pytest.mark.django_db
def test_a_saved_group_is_restored(app):
    succeed(app, "a", 1)
    succeed(app, "b", 2)
    group_of(app, "a", "b", group_id="saved").save()
    restored = GroupResult.restore("saved", app=app)
    assert restored == group_of(app, "a", "b", group_id="saved")
    assert restored.app is app
    assert all(member.app is app for member in restored)
    assert restored.get(timeout=1) == [1, 2]
    assert GroupResult.restore("never-saved", app=app) is None


@pytest.mark.django_db
def test_restore_without_an_app_uses_the_default_app(app):
    group_of(app, "a", group_id="saved").save()
    restored = GroupResult.restore("saved")
    assert restored is not None
    assert restored.results == ["a"]


@pytest.mark.django_db
def test_saving_again_replaces_the_members(app):
    group_of(app, "a", "b", group_id="saved").save()
    group_of(app, "c", group_id="saved").save()
    assert GroupResult.restore("saved", app=app).results == [AsyncResult("c")]


def test_a_nested_group_cannot_be_saved(app):
    outer = GroupResult("outer", [group_of(app, "b", group_id="inner")], app=app)
    with pytest.raises(TypeError, match=r"nested groups \['inner'\]"):
        outer.save()


@pytest.mark.django_db
def test_delete_removes_the_saved_group_and_keeps_the_results(app):
    succeed(app, "a", 1)
    group = group_of(app, "a", group_id="saved")
    group.save()
    group.delete()
    assert GroupResult.restore("saved", app=app) is None
    assert app.AsyncResult("a").state == states.SUCCESS


@pytest.mark.django_db
def test_forget_removes_the_saved_group_and_every_result(app):
    succeed(app, "a", 1)
    succeed(app, "b", 2)
    group = GroupResult("saved", [app.AsyncResult("a"), group_of(app, "b", group_id="inner")], app=app)
    assert group.ready()
    group_of(app, "a", "b", group_id="saved").save()
    group.forget()
    assert GroupResult.restore("saved", app=app) is None
    assert app.AsyncResult("a").state == states.PENDING
    assert app.AsyncResult("b").state == states.PENDING
    assert not group.ready()  # what the members kept was forgotten with them
