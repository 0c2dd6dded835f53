"""Task, @task / shared_task and App.task: naming, options, argument checks, eager runs."""

from __future__ import annotations

import inspect
import sys
import types

import pytest
from django.test import override_settings

import djtasks
from djtasks import App, EagerResult, Task, conf, shared_task, states, task
from djtasks.exceptions import AlreadyRegistered, NotRegistered
from djtasks.models import TaskResult
from djtasks.task import current_request
from tests.unit.memory_broker import drain


@task
def add(x, y):
    return x + y


@shared_task(name="tests.unit.explicitly-named")
def named():
    return "named"


@task(bind=True)
def whoami(self, suffix=""):
    return f"{self.request.id}{suffix}"


@task
def fail(message):
    raise ValueError(message)


@task(typing=False)
def untyped(*args, **kwargs):
    return len(args) + len(kwargs)


@task(typing=False)
def untyped_pair(x, y):
    return x + y


def make_app(**configured) -> App:
    return App(conf.load(configured, {}))


@pytest.fixture
def app():
    made = make_app()
    yield made
    made.close()


@pytest.fixture
def memory_default_app():
    """The default app on kombu's memory:// broker, with its celery queue emptied before and after."""
    with override_settings(DJTASKS={"broker_url": "memory://"}):
        drain_app(djtasks.app)
        yield djtasks.app
        drain_app(djtasks.app)


def drain_app(app: App, queue: str = "celery") -> list:
    return drain(queue, url=app.settings.broker_url)


# -- names ------------------------------------------------------------------------------------


def test_name_defaults_to_module_and_function():
    assert add.name == "tests.unit.test_task.add"
    assert repr(add) == "<@task: tests.unit.test_task.add>"


def test_explicit_name_wins():
    assert named.name == "tests.unit.explicitly-named"


def test_app_task_names_the_same_way(app):
    @app.task
    def local():
        return 1

    @app.task(name="custom.name")
    def other():
        return 2

    assert local.name == "tests.unit.test_task.local"
    assert other.name == "custom.name"
    assert app.tasks["tests.unit.test_task.local"] is local
    assert app.tasks["custom.name"] is other


def _main_function():
    def job():
        return "main"

    job.__module__ = "__main__"
    return job


def test_main_module_task_takes_the_app_main_name():
    app = make_app()
    app.main = "proj"
    assert app.task(_main_function()).name == "proj.job"


def test_main_module_task_takes_the_main_spec_name(app, monkeypatch):
    module = types.ModuleType("__main__")
    module.__spec__ = types.SimpleNamespace(name="proj.script")
    monkeypatch.setitem(sys.modules, "__main__", module)
    assert app.task(_main_function()).name == "proj.script.job"


def test_main_module_task_of_a_plain_script_keeps_main(app, monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    assert app.task(_main_function()).name == "__main__.job"


def test_app_main_is_set_by_the_constructor():
    app = App(conf.load({}, {}), main="proj")
    assert app.main == "proj"
    assert app.task(_main_function()).name == "proj.job"


# -- registry ---------------------------------------------------------------------------------


def test_two_tasks_under_one_name_are_refused(app):
    @app.task(name="taken")
    def first():
        return 1

    with pytest.raises(AlreadyRegistered, match="'taken'"):
        @app.task(name="taken")
        def second():
            return 2

    assert app.tasks["taken"] is first


def test_the_same_function_registered_again_is_not_a_conflict(app):
    # A module imported twice (autoreload, two import paths) defines the same task again.
    def job():
        return 1

    app.task(name="again")(job)
    second = app.task(name="again")(job)
    assert app.tasks["again"] is second


def test_shared_tasks_are_registered_with_every_app(app):
    assert app.tasks[add.name] is add
    assert make_app().tasks[named.name] is named
    assert djtasks.app.tasks[add.name] is add


def test_app_tasks_stay_with_their_app(app):
    @app.task
    def only_here():
        return 1

    other = make_app()
    assert only_here.name in app.tasks
    assert only_here.name not in other.tasks
    with pytest.raises(NotRegistered):
        other.tasks[only_here.name]
    with pytest.raises(KeyError):
        other.tasks[only_here.name]


def test_a_shared_task_and_an_app_task_under_one_name_are_refused(app):
    with pytest.raises(AlreadyRegistered):
        @app.task(name=add.name)
        def impostor(x, y):
            return x - y


def test_unregister(app):
    @app.task(name="gone")
    def gone():
        return 1

    app.tasks.unregister("gone")
    assert "gone" not in app.tasks
    with pytest.raises(NotRegistered, match="'gone' is not registered"):
        app.tasks.unregister("gone")


# -- options ----------------------------------------------------------------------------------


def test_unknown_option_names_the_closest(app):
    def job():
        return 1

    with pytest.raises(TypeError, match=r"'acks_lat'.*did you mean 'acks_late'"):
        app.task(acks_lat=True)(job)
    assert "tests.unit.test_task.job" not in app.tasks


def test_unknown_option_of_shared_task_names_the_closest():
    def job():
        return 1

    with pytest.raises(TypeError, match="did you mean 'ignore_result'"):
        task(ignore_reslt=True)(job)


def test_options_are_keywords_only(app):
    with pytest.raises(TypeError, match="keywords only"):
        app.task("a-name")
    with pytest.raises(TypeError, match="keywords only"):
        task("a-name")


def test_options_become_task_attributes(app):
    @app.task(queue="slow", acks_late=True, ignore_result=True, priority=3, serializer="json")
    def job():
        return 1

    assert job.queue == "slow"
    assert job.acks_late is True
    assert job.ignore_result is True
    assert job.priority == 3
    assert job.serializer == "json"
    assert isinstance(job, Task)


def test_task_attributes_default_to_following_the_app(app):
    @app.task
    def job():
        return 1

    assert job.queue is None
    assert job.acks_late is None
    assert job.ignore_result is None
    assert job.typing is True


def test_base_must_be_a_task_subclass(app):
    with pytest.raises(TypeError, match="base: expected a Task subclass"):
        app.task(base=object)(lambda: 1)


def test_base_given_a_task_instance_is_a_type_error(app):
    # The error message shows repr(base); an unnamed Task instance must not break it.
    with pytest.raises(TypeError, match="base: expected a Task subclass"):
        app.task(base=Task())(lambda: 1)


class SlowTask(Task):
    queue = "slow"
    acks_late = True

    def describe(self):
        return f"{self.name} on {self.queue}"


def test_base_class_attributes_are_inherited(app):
    @app.task(base=SlowTask)
    def job():
        return 1

    assert isinstance(job, SlowTask)
    assert job.queue == "slow"
    assert job.acks_late is True
    assert job.describe() == "tests.unit.test_task.job on slow"


def test_options_beat_the_base_class(app):
    @app.task(base=SlowTask, queue="fast")
    def job():
        return 1

    assert job.queue == "fast"
    assert SlowTask.queue == "slow"


def test_a_task_out_of_range_priority_is_refused_when_defined(app):
    # An unsupported use fails when the task is defined, not at every call (STYLE.md #4).
    with pytest.raises((ValueError, TypeError), match="priority"):
        app.task(priority=10)(lambda: 1)


def test_a_task_keeps_its_function_metadata():
    assert type(add).__module__ == "tests.unit.test_task"
    assert type(add).__qualname__ == "add"
    assert type(add).__doc__ is None
    assert type(fail).__name__ == "fail"


def test_a_task_unwraps_to_its_function():
    # inspect.signature / inspect.unwrap (used by documentation tools, IDEs, Django's
    # introspection) follow __wrapped__; it must be the plain function, not a bound method.
    assert list(inspect.signature(add).parameters) == ["x", "y"]
    assert inspect.unwrap(add)(2, 3) == 5
    assert list(inspect.signature(whoami).parameters) == ["self", "suffix"]


# -- calling inline ---------------------------------------------------------------------------


def test_calling_the_task_runs_it_inline():
    assert add(2, 3) == 5
    assert add(x=2, y=3) == 5


def test_bind_passes_the_task_as_self(app):
    @app.task(bind=True)
    def introspect(self, x):
        return self, x

    me, x = introspect(7)
    assert me is introspect
    assert x == 7


def test_request_of_a_direct_call_is_blank():
    assert whoami() == "None"
    assert current_request() is None
    request = whoami.request
    assert request.called_directly is True
    assert (request.id, request.args, request.kwargs, request.retries) == (None, (), {}, 0)


# -- argument checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: add.delay(1), "missing a required argument: 'y'"),
        (lambda: add.delay(), "missing a required argument: 'x'"),
        (lambda: add.apply_async((1, 2, 3)), "too many positional arguments"),
        (lambda: add.delay(1, 2, z=3), "unexpected keyword argument 'z'"),
        (lambda: add.apply_async((1,), {"x": 2}), "multiple values for argument 'x'"),
        (lambda: whoami.delay("a", "b"), "too many positional arguments"),
    ],
)
def test_bad_arguments_raise_before_anything_is_published(memory_default_app, call, message):
    with pytest.raises(TypeError, match=message) as info:
        call()
    assert "tests.unit.test_task." in str(info.value)  # the message names the task
    assert drain_app(memory_default_app) == []


def test_bad_arguments_never_open_a_broker_connection(memory_default_app):
    with pytest.raises(TypeError):
        add.delay(1)
    assert "publisher" not in memory_default_app.__dict__


def test_good_arguments_are_published(memory_default_app):
    # The positive control of the tests above: the same check does see a publish.
    result = add.delay(1, 2)
    messages = drain_app(memory_default_app)
    assert [m.headers["id"] for m in messages] == [result.id]
    assert messages[0].headers["task"] == add.name
    assert messages[0].decode()[0] == [1, 2]


def test_bind_task_arguments_are_checked_without_self(memory_default_app):
    whoami.delay("-x")
    assert len(drain_app(memory_default_app)) == 1


def test_typing_false_disables_the_check(memory_default_app):
    untyped_pair.delay(1)  # the worker would fail; the caller is not stopped
    untyped.delay(1, 2, three=3)
    assert len(drain_app(memory_default_app)) == 2


# -- apply_async options ----------------------------------------------------------------------


def test_unsupported_apply_async_option_names_the_closest(memory_default_app):
    with pytest.raises(TypeError, match=r"'queu'.*did you mean 'queue'"):
        add.apply_async((1, 2), queu="other")
    with pytest.raises(TypeError, match="did you mean 'routing_key'"):
        add.apply_async((1, 2), routing_kye="x")
    assert drain_app(memory_default_app) == []


def test_unsupported_apply_async_option_is_refused_in_eager_mode_too():
    # A typo must fail the same way in tests (eager) as in production.
    with (
        override_settings(DJTASKS={"task_always_eager": True}),
        pytest.raises(TypeError, match="did you mean 'queue'"),
    ):
        add.apply_async((1, 2), queu="other")


@pytest.mark.parametrize("priority", [10, -1, 255, True, "5", 2.5])
def test_priority_outside_0_to_9_is_refused(memory_default_app, priority):
    with pytest.raises(ValueError, match=r"priority: expected an integer from 0 to 9"):
        add.apply_async((1, 2), priority=priority)
    assert drain_app(memory_default_app) == []


@pytest.mark.parametrize("priority", [0, 5, 9])
def test_priority_inside_0_to_9_is_published(memory_default_app, priority):
    add.apply_async((1, 2), priority=priority)
    [message] = drain_app(memory_default_app)
    assert message.properties["priority"] == priority


def test_task_id_option_is_the_result_id(memory_default_app):
    result = add.apply_async((1, 2), task_id="my-id")
    assert result.id == "my-id"
    assert [m.headers["id"] for m in drain_app(memory_default_app)] == ["my-id"]


# -- eager ------------------------------------------------------------------------------------


def test_apply_returns_a_successful_eager_result():
    result = add.apply((2, 3))
    assert isinstance(result, EagerResult)
    assert result.state == states.SUCCESS
    assert result.status == states.SUCCESS
    assert result.ready()
    assert result.successful()
    assert not result.failed()
    assert result.result == 5
    assert result.get() == 5
    assert result.name == add.name
    assert repr(result) == f"<EagerResult: {result.id}>"


def test_apply_gives_the_task_an_eager_request():
    result = whoami.apply(kwargs={"suffix": "!"}, task_id="eager-1")
    assert result.id == "eager-1"
    assert result.get() == "eager-1!"
    assert current_request() is None  # restored afterwards


def test_apply_of_a_failing_task_keeps_the_exception():
    result = fail.apply(("no good",))
    assert result.state == states.FAILURE
    assert result.failed()
    assert isinstance(result.result, ValueError)
    assert result.result.args == ("no good",)
    assert "ValueError: no good" in result.traceback
    with pytest.raises(ValueError, match="no good") as info:
        result.get()
    assert info.value is result.result
    assert result.get(propagate=False) is result.result


def test_apply_checks_arguments():
    with pytest.raises(TypeError, match="missing a required argument"):
        add.apply((1,))


def test_eager_propagates_raises_from_apply():
    with override_settings(DJTASKS={"task_eager_propagates": True}), \
            pytest.raises(ValueError, match="raised"):
        fail.apply(("raised",))


def test_always_eager_runs_delay_inline_without_a_broker():
    with override_settings(DJTASKS={"task_always_eager": True, "broker_url": "amqp://nowhere:1//"}):
        result = add.delay(4, 4)
        assert isinstance(result, EagerResult)
        assert result.get() == 8
        assert "publisher" not in djtasks.app.__dict__


def test_always_eager_keeps_the_task_id():
    with override_settings(DJTASKS={"task_always_eager": True}):
        assert whoami.apply_async(task_id="fixed").get() == "fixed"


def test_always_eager_failure_is_kept_unless_propagating():
    with override_settings(DJTASKS={"task_always_eager": True}):
        result = fail.delay("kept")
        assert result.failed()
        with pytest.raises(ValueError, match="kept"):
            result.get()
    with override_settings(DJTASKS={"task_always_eager": True, "task_eager_propagates": True}), \
            pytest.raises(ValueError, match="propagated"):
        fail.delay("propagated")


def test_always_eager_still_checks_arguments():
    with override_settings(DJTASKS={"task_always_eager": True}), \
            pytest.raises(TypeError, match="missing a required argument"):
        add.delay(1)


# -- the default app --------------------------------------------------------------------------


def test_default_app_follows_djtasks_setting():
    before = djtasks.app
    assert djtasks.app is before  # built once
    with override_settings(DJTASKS={"task_default_queue": "elsewhere"}):
        inside = djtasks.app
        assert inside is not before
        assert inside.settings.task_default_queue == "elsewhere"
        assert inside.tasks[add.name] is add
        assert add.app is inside
    assert djtasks.app is not inside
    assert djtasks.app.settings.task_default_queue == "celery"


def test_default_app_is_not_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = djtasks.nope


def test_app_task_publishes_through_its_own_app(app):
    @app.task
    def mine():
        return 1

    assert mine.app is app
    assert add.app is djtasks.app


def test_task_async_result_handle(app):
    @app.task
    def mine():
        return 1

    result = mine.AsyncResult("some-id")
    assert result.id == "some-id"
    assert result.app is app


@pytest.mark.django_db
def test_update_state_without_a_state_is_refused_before_the_database():
    # Found by mypy: a None state reached the store and failed there as an IntegrityError.
    with pytest.raises(ValueError, match="expected a state"):
        add.update_state("no-state-id", meta={"current": 1})
    assert not TaskResult.objects.filter(task_id="no-state-id").exists()
