"""Results: exception encoding, AsyncResult, and the database backend on SQLite."""

from __future__ import annotations

import builtins
import pickle
import sys

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from djtasks import App, AsyncResult, conf, protocol, states
from djtasks.backends.base import ExecutionInfo, ResultMeta, exception_from_dict, exception_to_dict
from djtasks.backends.database import DatabaseBackend
from djtasks.exceptions import DjtasksError, RemoteTaskError, TaskRevokedError
from djtasks.exceptions import TimeoutError as ResultTimeoutError
from djtasks.models import DeadLetter, ParkedMessage, TaskDelivery, TaskResult
from djtasks.protocol import TaskMessage
from djtasks.task import Request, current_request, trace


class MyError(Exception):
    """A user's exception, importable as tests.unit.test_results.MyError."""


class TwoArgumentError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")


class Outer:
    class NestedError(Exception):
        pass


class NotAnException:
    """A class a forged result might name; it must never be instantiated."""

    created = 0

    def __init__(self, *args):
        type(self).created += 1


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything unpickles."""
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


@pytest.fixture
def app():
    made = App(conf.load({}, {}))
    yield made
    made.close()


# -- exception encoding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        ValueError("two", 2),
        KeyError("missing"),
        ZeroDivisionError("division by zero"),
        RuntimeError(),
        OSError(2, "No such file or directory"),
        MyError("mine", 1, None, 2.5, True),
        Outer.NestedError("nested"),
    ],
)
def test_exceptions_round_trip(no_unpickling, exc):
    data = exception_to_dict(exc)
    back = exception_from_dict(data)
    assert type(back) is type(exc)
    assert back.args == exc.args


def test_exception_dict_is_plain_data():
    data = exception_to_dict(MyError("mine", {"k": (1, 2)}, object))
    assert data["exc_type"] == "MyError"
    assert data["exc_module"] == "tests.unit.test_results"
    assert data["exc_message"][:2] == ["mine", {"k": [1, 2]}]
    assert isinstance(data["exc_message"][2], str)  # a class becomes its repr, not a pickle
    assert exception_to_dict(ValueError("x")) == {
        "exc_type": "ValueError", "exc_module": "builtins", "exc_message": ["x"],
    }


def test_unknown_module_gives_a_remote_task_error(no_unpickling):
    back = exception_from_dict(
        {"exc_type": "Boom", "exc_module": "no_such_package.errors", "exc_message": ["it broke", 7]}
    )
    assert isinstance(back, RemoteTaskError)
    assert isinstance(back, DjtasksError)
    assert back.exc_type == "no_such_package.errors.Boom"
    assert back.exc_message == "it broke 7"
    assert str(back) == "no_such_package.errors.Boom: it broke 7"


def test_unknown_builtin_type_gives_a_remote_task_error():
    back = exception_from_dict({"exc_type": "NoSuchError", "exc_module": "builtins",
                                "exc_message": ["gone"]})
    assert isinstance(back, RemoteTaskError)
    assert back.exc_type == "NoSuchError"
    assert back.exc_message == "gone"


def test_unknown_type_in_a_known_module_gives_a_remote_task_error():
    back = exception_from_dict({"exc_type": "Vanished", "exc_module": "tests.unit.test_results",
                                "exc_message": ["was here"]})
    assert isinstance(back, RemoteTaskError)
    assert back.exc_type == "tests.unit.test_results.Vanished"


def test_an_exception_with_another_constructor_gives_a_remote_task_error():
    data = exception_to_dict(TwoArgumentError(404, "not found"))
    back = exception_from_dict(data)
    assert isinstance(back, RemoteTaskError)
    assert back.exc_type == "tests.unit.test_results.TwoArgumentError"
    assert back.exc_message == "404: not found"


@pytest.mark.parametrize(
    ("module", "type_name"),
    [
        ("os", "path"),
        ("os", "system"),
        ("subprocess", "Popen"),
        ("builtins", "eval"),
        ("builtins", "object"),
        ("tests.unit.test_results", "NotAnException"),
    ],
)
def test_a_non_exception_is_never_instantiated(no_unpickling, monkeypatch, module, type_name):
    monkeypatch.setattr(NotAnException, "created", 0)
    back = exception_from_dict({"exc_type": type_name, "exc_module": module,
                                "exc_message": ["echo owned"]})
    assert isinstance(back, RemoteTaskError)
    assert type_name in back.exc_type
    assert NotAnException.created == 0


def test_a_stored_module_name_is_not_imported(capsys):
    # Data from the result store names the module; importing it runs its top-level code.
    # ``this`` prints the Zen of Python when first imported: a harmless stand-in for worse.
    if "this" in sys.modules:
        pytest.skip("'this' was imported by something else")
    back = exception_from_dict({"exc_type": "Zen", "exc_module": "this", "exc_message": ["x"]})
    assert isinstance(back, RemoteTaskError)
    assert "this" not in sys.modules
    assert capsys.readouterr().out == ""


def test_a_pickle_payload_is_only_text(no_unpickling):
    payload = pickle.dumps(MyError("inside"))
    back = exception_from_dict({"exc_type": "ValueError", "exc_module": "builtins",
                                "exc_message": [repr(payload)]})
    assert type(back) is ValueError
    assert back.args == (repr(payload),)


def test_missing_fields_default_to_exception():
    back = exception_from_dict({})
    assert type(back) is Exception
    assert back.args == ()


def test_a_scalar_message_is_one_argument():
    back = exception_from_dict({"exc_type": "ValueError", "exc_module": "builtins",
                                "exc_message": "single"})
    assert back.args == ("single",)


# -- AsyncResult ------------------------------------------------------------------------------


def test_async_result_equals_its_id_and_other_handles():
    first = AsyncResult("abc")
    assert first == "abc"
    assert first == AsyncResult("abc")
    assert first != AsyncResult("xyz")
    assert first != "xyz"
    assert first != 42
    assert hash(first) == hash("abc") == hash(AsyncResult("abc"))
    assert {first, AsyncResult("abc"), "abc"} == {"abc"}
    assert {"abc": 1}[first] == 1
    assert first.task_id == first.id == "abc"
    assert repr(first) == "<AsyncResult: abc>"


@pytest.mark.django_db
def test_unknown_id_is_pending(app):
    result = app.AsyncResult("never-published")
    assert result.state == states.PENDING
    assert result.status == states.PENDING
    assert not result.ready()
    assert not result.successful()
    assert not result.failed()
    assert result.result is None
    assert result.traceback is None
    assert result.date_done is None


@pytest.mark.django_db
def test_async_result_without_app_uses_the_default_app():
    assert AsyncResult("never-published").state == states.PENDING


@pytest.mark.django_db
def test_get_on_a_pending_id_times_out(app):
    with pytest.raises(ResultTimeoutError, match="never-published") as info:
        app.AsyncResult("never-published").get(timeout=0.05)
    assert isinstance(info.value, builtins.TimeoutError)
    assert isinstance(info.value, DjtasksError)


def test_get_inside_a_running_task_is_refused(app):
    @app.task
    def waits_on_another():
        return app.AsyncResult("other").get(timeout=1)

    with pytest.raises(RuntimeError, match=r"Never call result\.get\(\) within a task"):
        raise trace(waits_on_another, Request(TaskMessage(id="x", task="t"))).value
    assert current_request() is None


@pytest.mark.django_db
def test_get_inside_an_eager_task_is_allowed(app):
    backend = app.backend
    backend.store("done-before", states.SUCCESS, 3)

    @app.task
    def waits_on_another():
        return app.AsyncResult("done-before").get(timeout=1)

    assert trace(waits_on_another, Request(TaskMessage(id="x", task="t"), is_eager=True)).value == 3


# -- DatabaseBackend --------------------------------------------------------------------------


def test_django_db_is_the_default_backend(app):
    assert isinstance(app.backend, DatabaseBackend)
    assert app.backend.alias == "default"
    assert app.backend.supports_native_wait is False  # SQLite polls
    assert DatabaseBackend.from_url("django-db://default").alias == "default"


def test_an_unknown_database_alias_is_refused():
    with pytest.raises(ValueError, match="no database alias 'nowhere'"):
        DatabaseBackend.from_url("django-db://nowhere")


@pytest.mark.django_db
def test_store_and_read_back_a_success(app):
    info = ExecutionInfo(task_name="tests.add", worker="w1@host", queue="celery", retries=2,
                         parent_id="p", root_id="r", group_id="g", args_repr="(1, 2)",
                         kwargs_repr="{}")
    app.backend.store("t-1", states.SUCCESS, {"answer": [1, 2]}, info=info)
    meta = app.backend.get_meta("t-1")
    assert meta == ResultMeta("t-1", states.SUCCESS, {"answer": [1, 2]}, "", meta.date_done,
                              "tests.add", 2, "w1@host", parent_id="p", root_id="r", group_id="g",
                              queue="celery")
    assert meta.date_done is not None
    assert meta.date_done.tzinfo is not None
    row = TaskResult.objects.get(task_id="t-1")
    assert (row.queue, row.parent_id, row.root_id, row.group_id) == ("celery", "p", "r", "g")
    assert (row.task_args, row.task_kwargs) == ("(1, 2)", "{}")

    result = app.AsyncResult("t-1")
    assert result.get(timeout=1) == {"answer": [1, 2]}
    assert result.successful()
    assert result.name == "tests.add"
    assert result.worker == "w1@host"
    assert result.retries == 2


@pytest.mark.django_db
def test_a_stored_failure_re_raises_the_original_type(app, no_unpickling):
    app.backend.store("t-2", states.FAILURE, exception_to_dict(MyError("stored", 5)),
                      traceback="Traceback (most recent call last): ...")
    result = app.AsyncResult("t-2")
    with pytest.raises(MyError) as info:
        result.get(timeout=1)
    assert info.value.args == ("stored", 5)
    assert result.failed()
    assert isinstance(result.result, MyError)
    assert result.traceback.startswith("Traceback")
    assert isinstance(result.get(propagate=False), MyError)


@pytest.mark.django_db
def test_a_stored_failure_of_an_unknown_type_raises_remote_task_error(app):
    app.backend.store("t-3", states.FAILURE, {"exc_type": "Boom", "exc_module": "elsewhere",
                                              "exc_message": ["far away"]})
    with pytest.raises(RemoteTaskError, match=r"elsewhere\.Boom: far away"):
        app.AsyncResult("t-3").get(timeout=1)


@pytest.mark.django_db
def test_a_revoked_task_raises_task_revoked_error(app):
    app.backend.store("t-4", states.REVOKED)
    with pytest.raises(TaskRevokedError, match="t-4"):
        app.AsyncResult("t-4").get(timeout=1)


@pytest.mark.django_db
def test_started_then_success_keeps_date_started(app):
    app.backend.store("t-5", states.STARTED, info=ExecutionInfo(task_name="tests.slow"))
    started = TaskResult.objects.get(task_id="t-5")
    assert started.status == states.STARTED
    assert started.date_started is not None
    assert started.date_done is None
    assert app.AsyncResult("t-5").state == states.STARTED

    app.backend.store("t-5", states.SUCCESS, 42)
    done = TaskResult.objects.get(task_id="t-5")
    assert done.status == states.SUCCESS
    assert done.date_started == started.date_started
    assert done.date_done is not None
    assert done.date_done >= done.date_started
    assert done.task_name == "tests.slow"  # a store without info keeps what is there
    assert done.date_created == started.date_created
    assert TaskResult.objects.filter(task_id="t-5").count() == 1


@pytest.mark.django_db
def test_forget_deletes_the_result(app):
    app.backend.store("t-6", states.SUCCESS, 1)
    result = app.AsyncResult("t-6")
    assert result.get(timeout=1) == 1
    result.forget()
    assert not TaskResult.objects.filter(task_id="t-6").exists()
    assert app.AsyncResult("t-6").state == states.PENDING
    assert result.state == states.PENDING
    app.backend.forget("t-6")  # forgetting twice is fine


@pytest.mark.django_db
def test_a_ready_result_is_read_once(app, django_assert_num_queries):
    app.backend.store("t-7", states.SUCCESS, 7)
    result = app.AsyncResult("t-7")
    with django_assert_num_queries(1):
        assert result.get(timeout=1) == 7
        assert result.state == states.SUCCESS
        assert result.result == 7


@pytest.mark.django_db
@pytest.mark.parametrize("status", [states.STARTED, states.SUCCESS, states.FAILURE])
def test_one_store_is_one_upsert(app, status):
    app.backend.store("t-8", states.PENDING)  # the row exists: the upsert must update it
    with CaptureQueriesContext(connection) as queries:
        app.backend.store("t-8", status, {"n": 1}, info=ExecutionInfo(task_name="tests.x"))
    statements = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    writes = [s for s in statements if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert len(writes) == 1, statements
    assert writes[0].startswith("INSERT")
    assert "ON CONFLICT" in writes[0]
    assert TaskResult.objects.get(task_id="t-8").status == status


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
@pytest.mark.parametrize("alias", ["default", "postgres"])
@pytest.mark.parametrize("status", [states.STARTED, states.SUCCESS])
def test_a_store_in_autocommit_is_one_statement(alias, status):
    # A worker stores outside any transaction: no BEGIN and COMMIT around the upsert.
    backend = DatabaseBackend(alias)
    with CaptureQueriesContext(connections[alias]) as queries:
        backend.store("t-9", status, 1, info=ExecutionInfo(task_name="tests.x"))
    assert len(queries) == 1, queries.captured_queries
    assert backend.get_meta("t-9").status == status


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_a_ready_state_is_never_replaced_by_a_late_unready_one(alias):
    # A retried run can finish before the run that sent it stores RETRY.
    backend = DatabaseBackend(alias)
    backend.store("late", states.STARTED)
    backend.store("late", states.SUCCESS, 2)
    backend.store("late", states.RETRY, {"exc_type": "ValueError"})
    backend.store("late", states.STARTED)
    assert (backend.get_meta("late").status, backend.get_meta("late").result) == (states.SUCCESS, 2)
    backend.store("late", states.FAILURE, {"exc_type": "ValueError", "exc_module": "builtins"})
    assert backend.get_meta("late").status == states.FAILURE, "a ready state may follow another"
    backend.store("fresh", states.RETRY, {"exc_type": "ValueError"})
    assert backend.get_meta("fresh").status == states.RETRY


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_a_rejection_fails_only_a_result_that_is_not_ready(alias):
    # A broken message carrying the id of a finished task must leave its outcome alone.
    backend = DatabaseBackend(alias)
    rejection = {"exc_type": "ProtocolError", "exc_module": "djtasks.exceptions", "exc_message": ["bad"]}
    for ready in (states.SUCCESS, states.FAILURE, states.REVOKED):
        backend.store(f"done-{ready}", ready, {"exc_type": "X"} if ready != states.SUCCESS else 1)
        backend.fail_unless_ready(f"done-{ready}", rejection)
        assert backend.get_meta(f"done-{ready}").status == ready
        assert backend.get_meta(f"done-{ready}").result != rejection
    backend.store("waiting", states.STARTED)
    backend.fail_unless_ready("waiting", rejection)
    backend.fail_unless_ready("new", rejection)
    for task_id in ("waiting", "new"):
        meta = backend.get_meta(task_id)
        assert (meta.status, meta.result) == (states.FAILURE, rejection)
        assert meta.date_done is not None


@pytest.mark.django_db
def test_a_rejection_write_is_one_statement(app):
    app.backend.store("t-9", states.SUCCESS, 9)
    with CaptureQueriesContext(connection) as queries:
        app.backend.fail_unless_ready("t-9", {"exc_type": "ProtocolError"})
    writes = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(writes) == 1, writes
    assert app.backend.get_meta("t-9").result == 9


def test_the_id_limit_is_what_the_tables_hold():
    for model in (TaskResult, ParkedMessage, TaskDelivery, DeadLetter):
        assert model._meta.get_field("task_id").max_length == protocol.MAX_ID_LENGTH, model


def _synchronous_commit(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True, databases=["default", "postgres"])
@pytest.mark.parametrize(("setting", "inside"), [(True, "on"), (False, "off")])
def test_result_synchronous_commit_off_applies_to_the_result_write_only(setting, inside):
    app = App(conf.load({"result_backend": "django-db://postgres",
                         "result_synchronous_commit": setting}, {}))
    backend = app.backend
    assert backend.synchronous_commit is setting
    # Inside a transaction the statement's SET LOCAL shows; in a worker's autocommit it
    # covers the upsert's own transaction only.
    with transaction.atomic(using="postgres"):
        backend.store("t-lazy", states.SUCCESS, 1, info=ExecutionInfo(task_name="tests.x"))
        assert _synchronous_commit("postgres") == inside
    assert _synchronous_commit("postgres") == "on"  # the connection's own setting is untouched
    backend.store("t-lazy-2", states.SUCCESS, 2)
    try:
        assert backend.wait("t-lazy-2", timeout=5).result == 2  # stored, and its NOTIFY sent
    finally:
        app.close()  # its LISTEN connection
