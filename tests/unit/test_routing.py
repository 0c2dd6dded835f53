"""Router: every form of task_routes in Celery's routing guide, and option precedence."""

from __future__ import annotations

import re

import pytest
from kombu import Exchange, Queue

from djtasks import App, conf
from djtasks.exceptions import ImproperlyConfigured
from djtasks.routing import Route, Router, compile_routes, expand
from tests.unit.memory_broker import drain

CALLS: list[tuple] = []


def route_by_path(name, args, kwargs, options, task=None, **kw):
    """A router that task_routes names by its dotted path."""
    CALLS.append((name, args, kwargs, dict(options), task))
    if name.startswith("billing."):
        return {"queue": "billing", "routing_key": "billing.invoice"}
    return None


ROUTES_BY_PATH = {"reports.*": "reports"}
NOT_A_ROUTER = 42


def make_app(**configured) -> App:
    return App(conf.load(configured, {}))


def queue_of(app: App, name: str, args=(), kwargs=None, options=None, task=None) -> str:
    return app.route(name, args, kwargs or {}, options or {}, task).queue.name


@pytest.fixture
def memory_app():
    """An app publishing to memory://, with routes for the precedence tests."""
    app = make_app(
        broker_url="memory://",
        task_routes={"tests.unit.routed.*": {"queue": "from-route"}},
    )
    queues = ("celery", "from-route", "from-task", "explicit")
    for queue in queues:
        drain(queue)
    yield app
    for queue in queues:
        drain(queue)
    app.close()


# -- defaults ---------------------------------------------------------------------------------


def test_no_routes_go_to_the_default_queue():
    route = make_app().route("any.task", (), {}, {})
    assert route.queue.name == "celery"
    assert route.exchange == "celery"
    assert route.routing_key == "celery"
    assert route.queue.exchange.name == "celery"
    assert route.queue.exchange.type == "direct"
    assert route.queue.routing_key == "celery"
    assert route.priority is None


def test_task_default_queue_names_its_exchange_and_routing_key():
    route = make_app(task_default_queue="jobs").route("any.task", (), {}, {})
    assert (route.queue.name, route.exchange, route.routing_key) == ("jobs", "jobs", "jobs")


def test_task_default_exchange_and_routing_key_settings():
    app = make_app(task_default_exchange="tasks", task_default_routing_key="task.default")
    route = app.route("any.task", (), {}, {})
    assert route.queue.name == "celery"
    assert (route.exchange, route.routing_key) == ("tasks", "task.default")
    assert route.queue.exchange.name == "tasks"
    assert route.queue.routing_key == "task.default"


def test_a_routed_queue_gets_exchange_and_routing_key_of_its_name():
    app = make_app(task_routes={"feed.tasks.import_feed": "feeds"})
    route = app.route("feed.tasks.import_feed", (), {}, {})
    assert (route.queue.name, route.exchange, route.routing_key) == ("feeds", "feeds", "feeds")
    assert route.queue.exchange.name == "feeds"
    assert route.queue.routing_key == "feeds"


def test_a_routed_queue_ignores_the_default_exchange_setting():
    app = make_app(task_default_exchange="tasks", task_routes={"a": "feeds"})
    assert app.route("a", (), {}, {}).exchange == "feeds"


def test_queue_declarations_are_cached():
    router = Router(None, "celery")
    assert router.queue("feeds") is router.queue("feeds")
    assert router.queue("feeds") is not router.queue("feeds", routing_key="other")


# -- dict forms -------------------------------------------------------------------------------


def test_dict_by_exact_name():
    app = make_app(task_routes={"feed.tasks.import_feed": {"queue": "feeds"}})
    assert queue_of(app, "feed.tasks.import_feed") == "feeds"
    assert queue_of(app, "feed.tasks.import_feed_x") == "celery"
    assert queue_of(app, "feed.tasks") == "celery"


def test_dict_with_a_bare_queue_string():
    app = make_app(task_routes={"feed.tasks.import_feed": "feeds"})
    assert queue_of(app, "feed.tasks.import_feed") == "feeds"


def test_dict_with_a_glob():
    app = make_app(task_routes={"feed.tasks.*": {"queue": "feeds"}})
    assert queue_of(app, "feed.tasks.import_feed") == "feeds"
    assert queue_of(app, "feed.tasks.deep.name") == "feeds"
    assert queue_of(app, "web.tasks.feed") == "celery"
    assert queue_of(app, "xfeed.tasks.import_feed") == "celery"


def test_glob_dots_are_literal():
    app = make_app(task_routes={"feed.tasks.*": "feeds"})
    assert queue_of(app, "feedXtasksXimport") == "celery"


def test_dict_value_with_every_route_key():
    app = make_app(task_routes={
        "media.tasks.encode": {
            "queue": "media", "exchange": "media-exchange", "routing_key": "media.video",
            "priority": 7, "exchange_type": "topic",
        },
    })
    route = app.route("media.tasks.encode", (), {}, {})
    assert route == Route(queue=route.queue, exchange="media-exchange",
                          routing_key="media.video", priority=7)
    assert route.queue.name == "media"
    assert route.queue.exchange.name == "media-exchange"
    assert route.queue.exchange.type == "topic"
    assert route.queue.routing_key == "media.video"


def test_dict_value_with_only_a_routing_key_keeps_the_queue_name_as_exchange():
    app = make_app(task_routes={"a.task": {"queue": "feeds", "routing_key": "feeds.a"}})
    route = app.route("a.task", (), {}, {})
    assert (route.queue.name, route.exchange, route.routing_key) == ("feeds", "feeds", "feeds.a")


def test_compiled_regex_keys():
    app = make_app(task_routes={re.compile(r"(video|image)\.tasks\..*"): {"queue": "media"}})
    assert queue_of(app, "video.tasks.encode") == "media"
    assert queue_of(app, "image.tasks.resize") == "media"
    assert queue_of(app, "audio.tasks.mix") == "celery"


def test_exact_name_beats_a_glob_in_any_order():
    for routes in (
        {"feed.tasks.*": "feeds", "feed.tasks.import_feed": "imports"},
        {"feed.tasks.import_feed": "imports", "feed.tasks.*": "feeds"},
    ):
        app = make_app(task_routes=routes)
        assert queue_of(app, "feed.tasks.import_feed") == "imports"
        assert queue_of(app, "feed.tasks.other") == "feeds"


def test_patterns_are_tried_in_order():
    app = make_app(task_routes={"feed.*": "first", "feed.tasks.*": "second"})
    assert queue_of(app, "feed.tasks.x") == "first"


# -- lists, tuples, callables, dotted paths ---------------------------------------------------


CELERY_GUIDE_ROUTES = ([
    ("feed.tasks.*", {"queue": "feeds"}),
    ("web.tasks.*", {"queue": "web"}),
    (re.compile(r"(video|image)\.tasks\..*"), {"queue": "media"}),
],)


def test_an_ordered_list_of_pairs_in_a_tuple():
    app = make_app(task_routes=CELERY_GUIDE_ROUTES)
    assert queue_of(app, "feed.tasks.import_feed") == "feeds"
    assert queue_of(app, "web.tasks.render") == "web"
    assert queue_of(app, "video.tasks.encode") == "media"
    assert queue_of(app, "image.tasks.resize") == "media"
    assert queue_of(app, "other.tasks.x") == "celery"


def test_a_bare_list_of_pairs():
    app = make_app(task_routes=[("a.*", "first"), ("a.b.*", "second"), ("c.d", {"queue": "cd"})])
    assert queue_of(app, "a.b.c") == "first"
    assert queue_of(app, "c.d") == "cd"


def test_a_list_of_pairs_keeps_pattern_order():
    pairs = [(re.compile(r"a\..*"), "regex"), ("a.*", "glob")]
    assert queue_of(make_app(task_routes=[pairs]), "a.x") == "regex"
    assert queue_of(make_app(task_routes=[list(reversed(pairs))]), "a.x") == "glob"


def test_a_callable_router_gets_name_args_kwargs_options_and_task():
    seen = []

    def router(name, args, kwargs, options, task=None, **kw):
        seen.append((name, args, kwargs, options, task))
        return {"queue": "hashed"} if kwargs.get("user") == "vip" else None

    app = make_app(task_routes=router)
    marker = object()
    assert app.route("t.x", (1,), {"user": "vip"}, {"routing_key": "rk"}, marker).queue.name == "hashed"
    assert seen == [("t.x", (1,), {"user": "vip"}, {"routing_key": "rk"}, marker)]
    assert queue_of(app, "t.x", kwargs={"user": "someone"}) == "celery"


def test_a_callable_router_may_answer_a_queue_name_or_a_kombu_queue():
    def by_name(name, args, kwargs, options, task=None, **kw):
        return "named"

    app = make_app(task_routes=[by_name])
    assert queue_of(app, "x") == "named"

    declared = Queue("declared", Exchange("declared-exchange", type="direct"), routing_key="rk")

    def by_queue(name, args, kwargs, options, task=None, **kw):
        return declared

    route = make_app(task_routes=[by_queue]).route("x", (), {}, {})
    assert (route.queue.name, route.exchange, route.routing_key) == ("declared", "declared-exchange", "rk")


def test_a_dotted_path_to_a_router_function():
    CALLS.clear()
    app = make_app(task_routes="tests.unit.test_routing.route_by_path")
    route = app.route("billing.tasks.charge", (5,), {"cents": 1}, {})
    assert (route.queue.name, route.routing_key) == ("billing", "billing.invoice")
    assert CALLS == [("billing.tasks.charge", (5,), {"cents": 1}, {}, None)]
    assert queue_of(app, "other.tasks.x") == "celery"


def test_dotted_paths_inside_a_list():
    app = make_app(task_routes=[
        "tests.unit.test_routing.route_by_path",
        "tests.unit.test_routing.ROUTES_BY_PATH",
    ])
    assert queue_of(app, "billing.x") == "billing"
    assert queue_of(app, "reports.monthly") == "reports"
    assert queue_of(app, "else.x") == "celery"


def test_the_first_router_that_answers_wins():
    calls = []

    def silent(name, args, kwargs, options, task=None, **kw):
        calls.append("silent")

    def loud(name, args, kwargs, options, task=None, **kw):
        calls.append("loud")
        return "loud"

    def never(name, args, kwargs, options, task=None, **kw):
        calls.append("never")
        return "never"

    app = make_app(task_routes=[silent, {"x.*": "from-dict"}, loud, never])
    assert queue_of(app, "x.y") == "from-dict"
    assert calls == ["silent"]
    calls.clear()
    assert queue_of(app, "z.y") == "loud"
    assert calls == ["silent", "loud"]


def test_routes_from_the_environment_as_json():
    settings = conf.load({}, {"DJTASKS_TASK_ROUTES": '{"feed.tasks.*": {"queue": "feeds"}}'})
    assert queue_of(App(settings), "feed.tasks.import_feed") == "feeds"


# -- precedence -------------------------------------------------------------------------------


def test_explicit_queue_option_beats_the_route():
    app = make_app(task_routes={"a.*": {"queue": "routed", "routing_key": "routed.rk"}})
    route = app.route("a.b", (), {}, {"queue": "explicit"})
    assert (route.queue.name, route.exchange, route.routing_key) == ("explicit", "explicit", "explicit")


def test_explicit_routing_key_and_exchange_beat_the_route():
    app = make_app(task_routes={"a.*": {"queue": "routed", "routing_key": "routed.rk", "priority": 3}})
    route = app.route("a.b", (), {}, {"routing_key": "mine", "exchange": "ex", "priority": 8})
    assert (route.queue.name, route.exchange, route.routing_key, route.priority) == (
        "routed", "ex", "mine", 8,
    )


def test_options_that_are_not_route_keys_are_ignored_by_the_route():
    app = make_app(task_routes={"a.*": "routed"})
    assert app.route("a.b", (), {}, {"serializer": "json", "queue": None}).queue.name == "routed"


def test_send_task_explicit_beats_route_beats_task_attribute_beats_default(memory_app):
    @memory_app.task(name="tests.unit.routed.with_queue", queue="from-task")
    def with_queue():
        return 1

    @memory_app.task(name="tests.unit.not_routed.with_queue", queue="from-task")
    def unrouted_with_queue():
        return 1

    @memory_app.task(name="tests.unit.routed.without_queue")
    def without_queue():
        return 1

    with_queue.apply_async(queue="explicit")
    with_queue.delay()
    unrouted_with_queue.delay()
    without_queue.delay()
    memory_app.send_task("tests.unit.not_routed")
    assert [m.headers["task"] for m in drain("explicit")] == ["tests.unit.routed.with_queue"]
    assert [m.headers["task"] for m in drain("from-route")] == [
        "tests.unit.routed.with_queue", "tests.unit.routed.without_queue",
    ]
    assert [m.headers["task"] for m in drain("from-task")] == ["tests.unit.not_routed.with_queue"]
    assert [m.headers["task"] for m in drain("celery")] == ["tests.unit.not_routed"]


def test_send_task_of_an_unregistered_name_is_routed(memory_app):
    memory_app.send_task("tests.unit.routed.remote", (1,), {"a": 2})
    [message] = drain("from-route")
    assert message.headers["task"] == "tests.unit.routed.remote"
    assert message.delivery_info["routing_key"] == "from-route"
    # A queue's own direct route goes through the default exchange, as Celery sends it.
    assert message.delivery_info["exchange"] == ""


def test_task_routing_key_attribute_is_used(memory_app):
    @memory_app.task(name="tests.unit.routed.with_key", routing_key="rk-from-task")
    def with_key():
        return 1

    with_key.delay()
    [message] = drain("from-route")
    assert message.delivery_info["routing_key"] == "rk-from-task"


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"a.*": 42}, "expected a queue name or a dict, got 42"),
        ({"a.*": {"queu": "x"}}, r"unknown route key\(s\) \['queu'\]"),
        ([("a.*", ["q"])], r"expected a queue name or a dict, got \['q'\]"),
        ("tests.unit.test_routing.no_such_router", "cannot import router"),
        ("no_such_module.router", "cannot import router 'no_such_module.router'"),
        ("tests.unit.test_routing.NOT_A_ROUTER", "expected a dict, pairs or a callable, got 42"),
        ([42], "expected a dict, pairs or a callable, got 42"),
        (42, "expected a dict, list or callable, got 42"),
    ],
)
def test_bad_routes_are_refused_when_the_router_is_built(routes, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        Router(routes, "celery")


def test_bad_routes_are_refused_when_the_app_is_built():
    with pytest.raises(ImproperlyConfigured, match="task_routes"):
        make_app(task_routes={"a.*": {"queue": "q", "exchnage": "x"}})


def test_a_router_answering_nonsense_is_refused():
    def router(name, args, kwargs, options, task=None, **kw):
        return 42

    app = make_app(task_routes=router)
    with pytest.raises(ImproperlyConfigured, match="expected a queue name or a dict, got 42"):
        app.route("x", (), {}, {})


def test_a_missing_queue_is_refused_when_create_missing_queues_is_off():
    app = make_app(task_create_missing_queues=False, task_routes={"a": "elsewhere"})
    assert queue_of(app, "b") == "celery"
    with pytest.raises(ImproperlyConfigured, match="'elsewhere' is not declared"):
        app.route("a", (), {}, {})


def test_expand_forms():
    assert expand("feeds") == {"queue": "feeds"}
    assert expand({"queue": "feeds", "priority": 1}) == {"queue": "feeds", "priority": 1}
    assert compile_routes(None) == []
    assert compile_routes(()) == []
