"""RoutingRule: matching, order, precedence against every other source, validation, refresh."""

from __future__ import annotations

import io
import logging

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from djtasks import App, conf
from djtasks.models import RoutingRule
from djtasks.routing import RulesCache
from djtasks.utils.route_rules import RouteRule, RuleSet, compile_pattern
from tests.unit.memory_broker import drain


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_app(**configured) -> App:
    return App(conf.load({"broker_url": "memory://", **configured}, {}))


def rule(name: str, pattern: str, match: str = "glob", order: int = 0, **route) -> RouteRule:
    return RouteRule(name=name, pattern=pattern, match=match, order=order, route=route or {"queue": name})


# -- matching -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "match", "name", "matches"),
    [
        ("mail.tasks.send", "exact", "mail.tasks.send", True),
        ("mail.tasks.send", "exact", "mail.tasks.send_x", False),
        ("mail.tasks.send", "exact", "xmail.tasks.send", False),
        ("mail.tasks.*", "exact", "mail.tasks.send", False),  # no wildcard in an exact name
        ("mail.tasks.*", "glob", "mail.tasks.send", True),
        ("mail.tasks.*", "glob", "mail.tasks.deep.send", True),
        ("mail.tasks.*", "glob", "xmail.tasks.send", False),  # a glob covers the whole name
        ("mail.tasks.*", "glob", "mailXtasksXsend", False),  # its dots are literal
        ("mail.tasks.sen?", "glob", "mail.tasks.send", True),
        ("mail.tasks.send", "glob", "mail.tasks.send_later", False),
        (r"tasks\.(send|notify)_", "regex", "mail.tasks.send_now", True),  # searched: unanchored
        (r"^mail\.tasks\.(send|notify)_", "regex", "mail.tasks.notify_all", True),
        (r"^mail\.tasks\.(send|notify)_", "regex", "old.mail.tasks.send_x", False),
        (r"^mail\.tasks\.send$", "regex", "mail.tasks.send_x", False),
        (r"^mail\.tasks\.send$", "regex", "mail.tasks.send", True),
    ],
)
def test_a_pattern_matches_by_its_kind(pattern, match, name, matches):
    assert bool(compile_pattern(pattern, match).search(name)) is matches
    found = RuleSet([rule("r", pattern, match)]).first(name)
    assert (found is not None) is matches


def test_rules_are_tried_by_order_then_name():
    rules = RuleSet([rule("b", "a.*", order=5), rule("z", "a.*", order=1), rule("a", "a.*", order=5)])
    assert [r.name for r in rules.rules] == ["z", "a", "b"]
    assert rules.first("a.x").name == "z"
    ties = RuleSet([rule("beta", "a.*"), rule("alpha", "a.*")])
    assert ties.first("a.x").name == "alpha"


def test_a_rule_that_matches_nothing_else_is_passed_over():
    rules = RuleSet([rule("first", "b.*", order=1), rule("second", "a.*", order=2)])
    assert rules.first("a.x").name == "second"
    assert rules.first("c.x") is None


def test_a_broken_regex_written_around_validation_matches_nothing():
    rules = RuleSet([rule("broken", "(", "regex", order=1), rule("good", "a.*", order=2)])
    assert rules.first("a.x").name == "good"


# -- precedence ---------------------------------------------------------------------------


@pytest.fixture
def precedence_app():
    """Every source sets a queue (and a priority) for tasks named ``p.*``."""
    app = make_app(task_routes={"p.*": {"queue": "from-routes", "priority": 2}}, task_default_priority=1)

    @app.task(name="p.task", queue="from-task", priority=3)
    def task():
        return 1

    @app.task(name="q.task", queue="from-task", routing_key="rk-task", priority=3)
    def other():
        return 1

    RoutingRule.objects.create(name="the rule", pattern="p.*", queue="from-rule", priority=4)
    queues = ("celery", "from-rule", "from-routes", "from-task", "explicit")
    for queue in queues:
        drain(queue)
    yield app
    for queue in queues:
        drain(queue)
    app.close()


@pytest.mark.django_db
def test_call_options_beat_a_rule(precedence_app):
    found = precedence_app.router.explain("p.task", options={"queue": "explicit", "priority": 9},
                                          task=precedence_app.tasks["p.task"])
    assert (found.route.queue.name, found.route.priority) == ("explicit", 9)
    assert found.source == "call option"
    assert found.sources["priority"] == "call option"
    # The rule's queue is not the chosen one, so only a priority could come from it.
    assert (found.route.exchange, found.route.routing_key) == ("explicit", "explicit")


@pytest.mark.django_db
def test_a_rule_beats_task_routes_and_the_task_options(precedence_app):
    found = precedence_app.explain_route("p.task")
    assert (found.route.queue.name, found.route.priority) == ("from-rule", 4)
    assert found.source == 'rule "the rule"'
    assert found.sources["priority"] == 'rule "the rule"'


@pytest.mark.django_db
def test_a_disabled_rule_gives_way_to_task_routes(precedence_app):
    RoutingRule.objects.update(enabled=False)
    found = precedence_app.explain_route("p.task")
    assert (found.route.queue.name, found.route.priority, found.source) == ("from-routes", 2, "task_routes")


@pytest.mark.django_db
def test_task_options_beat_the_default_queue(precedence_app):
    found = precedence_app.explain_route("q.task")
    assert (found.route.queue.name, found.route.routing_key, found.route.priority) == (
        "from-task", "rk-task", 3)
    assert found.source == "task option"


@pytest.mark.django_db
def test_the_default_queue_and_priority_come_last(precedence_app):
    found = precedence_app.explain_route("unknown.task")
    assert (found.route.queue.name, found.route.priority) == ("celery", 1)
    assert found.sources == {"queue": "default queue", "exchange": "default queue",
                             "routing_key": "default queue", "priority": "task_default_priority"}


@pytest.mark.django_db
def test_a_rule_without_a_queue_adds_its_keys_beneath_a_higher_queue(precedence_app):
    RoutingRule.objects.create(name="priority only", pattern="q.*", priority=8, routing_key="rk-rule")
    found = precedence_app.explain_route("q.task")
    assert (found.route.queue.name, found.route.routing_key, found.route.priority) == (
        "from-task", "rk-rule", 8)
    assert found.sources["queue"] == "task option"
    assert found.sources["routing_key"] == 'rule "priority only"'


@pytest.mark.django_db
def test_publishing_follows_the_rule_and_the_rule_with_every_key(precedence_app):
    RoutingRule.objects.filter(name="the rule").update(
        exchange="rule-exchange", exchange_type="topic", routing_key="rule.key")
    precedence_app.tasks["p.task"].delay()
    precedence_app.tasks["p.task"].apply_async(queue="explicit")
    precedence_app.send_task("p.remote")  # not registered here: routed by name all the same
    [message, remote] = drain("from-rule")
    assert message.headers["task"] == "p.task"
    assert message.properties["priority"] == 4
    assert message.delivery_info["routing_key"] == "rule.key"
    assert remote.headers["task"] == "p.remote"
    assert [m.headers["task"] for m in drain("explicit")] == ["p.task"]
    queue = precedence_app.route("p.task", (), {}, {}).queue
    assert (queue.exchange.name, queue.exchange.type) == ("rule-exchange", "topic")


@pytest.mark.django_db
def test_a_retry_keeps_its_queue_over_a_rule(precedence_app):
    # task.retry passes the queue the message came by as a call option.
    found = precedence_app.router.explain("p.task", options={"queue": "from-task",
                                                             "routing_key": "from-task"})
    assert found.route.queue.name == "from-task"


@pytest.mark.django_db
def test_route_command_prints_the_route_and_its_source(precedence_app, settings):
    settings.DJTASKS = {"broker_url": "memory://"}
    out = io.StringIO()
    call_command("djtasks", "route", "p.anything", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["queue", "from-rule", '(rule', '"the', 'rule")']
    assert lines[3].split()[:2] == ["priority", "4"]


# -- validation ---------------------------------------------------------------------------


def errors_of(**fields) -> dict[str, list[str]]:
    values = {"name": "r", "pattern": "a.*", "queue": "q", **fields}
    with pytest.raises(ValidationError) as caught:
        RoutingRule(**values).full_clean()
    return caught.value.message_dict


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"pattern": "(unclosed", "match": "regex"}, "pattern", "expected a regular expression"),
        ({"queue": ""}, "queue", "expected a route"),
        ({"priority": 10}, "priority", "less than or equal to 9"),
        ({"priority": -1}, "priority", ""),
        ({"queue": "   "}, "queue", "white space"),
        ({"queue": " q"}, "queue", "white space at its ends"),
        ({"queue": "a\x06b"}, "queue", "control characters"),
        ({"queue": "é" * 128}, "queue", "at most 255 bytes"),
        ({"queue": "amq.mine"}, "queue", "amq.* is reserved"),
        ({"routing_key": "k\n"}, "routing_key", "white space at its ends"),
        ({"routing_key": "k\x00k"}, "routing_key", "control characters"),
        ({"match": "fuzzy"}, "match", "not a valid choice"),
    ],
)
def test_full_clean_names_the_field(fields, field, message):
    errors = errors_of(**fields)
    assert field in errors
    assert message in " ".join(errors[field])


@pytest.mark.django_db
def test_a_rule_with_only_a_priority_is_valid():
    RoutingRule(name="p", pattern="a.*", priority=0).full_clean()
    RoutingRule(name="r", pattern=r"^a\.(b|c)$", match="regex", queue="q" * 255).full_clean()


# -- refresh ------------------------------------------------------------------------------


def test_rules_are_read_again_only_after_the_refresh_interval():
    clock, reads, stored = FakeClock(), [], [rule("one", "a.*")]

    def read():
        reads.append(clock.now)
        return list(stored)

    cache = RulesCache(read, refresh=2.0, clock=clock)
    assert cache.current().first("a.x").name == "one"
    stored[:] = [rule("two", "a.*")]
    clock.now += 1.9
    assert cache.current().first("a.x").name == "one"
    clock.now += 0.1
    assert cache.current().first("a.x").name == "two"
    assert reads == [1000.0, 1002.0]
    assert cache.current(fresh=True).first("a.x").name == "two"
    assert len(reads) == 3


def test_a_failed_read_keeps_the_last_rules_and_warns_once_per_incident(caplog):
    clock, failing = FakeClock(), [False]

    def read():
        if failing[0]:
            raise ConnectionError("database is down")
        return [rule("kept", "a.*")]

    cache = RulesCache(read, refresh=2.0, clock=clock)
    cache.current()
    failing[0] = True
    with caplog.at_level(logging.WARNING, logger="djtasks.routing"):
        for _ in range(3):
            clock.now += 2
            assert cache.current().first("a.x").name == "kept"
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
            "routing rules: cannot read them (ConnectionError: database is down); the 1 rule(s) "
            "last read keep applying"]
        failing[0] = False
        clock.now += 2
        cache.current()
        failing[0] = True
        clock.now += 2
        cache.current()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_not_ready_yet_is_asked_again_on_next_use():
    answers = [None, [rule("late", "a.*")]]
    cache = RulesCache(lambda: answers.pop(0), refresh=60.0, clock=FakeClock())
    assert cache.current().first("a.x") is None
    assert cache.current().first("a.x").name == "late"


@pytest.mark.django_db
def test_every_kind_of_change_shows_after_the_refresh():
    app, clock = make_app(), FakeClock()
    app.routing_rules.clock = clock

    def queue() -> str:
        clock.now += 2.0
        return app.route("a.task", (), {}, {}).queue.name

    assert queue() == "celery"
    made = RoutingRule.objects.create(name="r", pattern="a.*", queue="created")
    assert queue() == "created"
    made.queue = "saved"
    made.save()
    assert queue() == "saved"
    RoutingRule.objects.update(queue="updated")
    assert queue() == "updated"
    RoutingRule.objects.bulk_create([RoutingRule(name="0", pattern="a.task", match="exact", order=-1,
                                                 queue="bulk")])
    assert queue() == "bulk"
    with connection.cursor() as cursor:  # SQL from outside Django: date_changed is not touched
        cursor.execute("UPDATE djtasks_routingrule SET queue = 'raw' WHERE name = '0'")
    assert queue() == "raw"
    RoutingRule.objects.filter(name="0").update(enabled=False)
    assert queue() == "updated"
    RoutingRule.objects.all().delete()
    assert queue() == "celery"
    app.close()


def rule_reads(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]


@pytest.mark.django_db
def test_publishing_between_refreshes_costs_no_query():
    app, clock = make_app(), FakeClock()
    app.routing_rules.clock = clock
    RoutingRule.objects.create(name="r", pattern="a.*", queue="ruled")
    drain("ruled")
    with CaptureQueriesContext(connection) as first:
        app.send_task("a.task")
    # One read of the rules (in a savepoint: the test runs inside a transaction).
    assert len(rule_reads(first)) == 1, first.captured_queries
    clock.now += 1.5
    with CaptureQueriesContext(connection) as later:
        for _ in range(20):
            app.send_task("a.task")
    assert later.captured_queries == []
    clock.now += 0.5
    with CaptureQueriesContext(connection) as refreshed:
        app.send_task("a.task")
    assert len(rule_reads(refreshed)) == 1
    assert len(drain("ruled")) == 22
    app.close()


# -- fixtures -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_dumpdata_and_loaddata_round_trip_by_name(tmp_path):
    RoutingRule.objects.create(name="urgent mail", pattern=r"^mail\.tasks\.(send|notify)_",
                               match="regex", queue="hipri", priority=9, order=10)
    RoutingRule.objects.create(name="reports", pattern="reports.tasks.*", queue="slow")
    fixture = tmp_path / "rules.json"
    call_command("dumpdata", "djtasks.RoutingRule", "--natural-primary", "--natural-foreign",
                 output=str(fixture))
    assert '"pk"' not in fixture.read_text()
    before = sorted(RoutingRule.objects.values_list("name", "pattern", "match", "queue", "priority", "order"))
    RoutingRule.objects.filter(name="reports").update(queue="changed")
    RoutingRule.objects.filter(name="urgent mail").delete()
    call_command("loaddata", str(fixture), verbosity=0)
    after = sorted(RoutingRule.objects.values_list("name", "pattern", "match", "queue", "priority", "order"))
    assert after == before
    assert RoutingRule.objects.get_by_natural_key("reports").queue == "slow"
