"""Router: where a call goes and why, from every source of a route in order (client layer).

| rank | source | named in an explanation |
| --- | --- | --- |
| 1 | the call's own options (``apply_async(queue=...)``, a retry, a beat entry's queue) | ``call option`` |
| 2 | the first enabled ``RoutingRule`` that matches the task name | ``rule "<name>"`` |
| 3 | ``task_routes`` (the first router that answers) | ``task_routes`` |
| 4 | the task's own ``queue=``, ``routing_key=``, ``priority=`` | ``task option`` |
| 5 | ``task_default_queue`` (and ``task_default_priority``) | ``default queue`` |

Each key is taken from the highest source that gives it, except that a source naming
another queue than the chosen one gives only its priority: its exchange and routing key
belong to its own queue. ``explain`` is the one answer; publishing, ``djtasks route`` and
the admin's preview all ask it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kombu import Exchange, Queue

from djtasks.exceptions import ImproperlyConfigured
from djtasks.routing.rules_cache import RulesCache
from djtasks.routing.settings_routes import ROUTE_KEYS, RouteFn, compile_routes, expand

CALL_OPTION = "call option"
TASK_ROUTES = "task_routes"
TASK_OPTION = "task option"
DEFAULT_QUEUE = "default queue"
DEFAULT_PRIORITY = "task_default_priority"
_TASK_ROUTE_ATTRIBUTES = ("queue", "routing_key", "priority")


@dataclass(frozen=True)
class Route:
    """Where one message goes."""

    queue: Queue
    exchange: str
    routing_key: str
    priority: int | None = None


@dataclass(frozen=True)
class Explanation:
    """A Route and, for each of its keys, the source that gave it."""

    route: Route
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where the queue came from: ``call option``, ``rule "<name>"``, ``task_routes``, ..."""
        return self.sources["queue"]

    def lines(self) -> list[str]:
        """Describe the route a line per key, each with its source."""
        route = self.route
        rows = [("queue", route.queue.name), ("exchange", route.exchange),
                ("routing key", route.routing_key),
                ("priority", "-" if route.priority is None else str(route.priority))]
        keys = ("queue", "exchange", "routing_key", "priority")
        width = max(len(value) for _label, value in rows)
        return [f"{label:<12} {value:<{width}}  ({self.sources.get(key, 'none set')})"
                for (label, value), key in zip(rows, keys, strict=True)]


class Router:
    """Resolve a Route for a task call."""

    def __init__(self, routes: Any, default_queue: str, create_missing_queues: bool = True,
                 default_exchange: str | None = None, default_routing_key: str | None = None,
                 rules: RulesCache | None = None, default_priority: int | None = None) -> None:
        self.routers: list[RouteFn] = compile_routes(routes)
        self.default_queue = default_queue
        self.default_exchange = default_exchange or default_queue
        self.default_routing_key = default_routing_key or default_queue
        self.default_priority = default_priority
        self.create_missing_queues = create_missing_queues
        self.rules = rules
        self._queues: dict[tuple[str, str, str], Queue] = {}

    def route(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
              options: Mapping[str, Any], task: Any = None) -> Route:
        """Return the Route of a call; ``options`` are the call's own (not the task's)."""
        return self.explain(name, args, kwargs, options, task).route

    def explain(self, name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                options: Mapping[str, Any] | None = None, task: Any = None,
                fresh: bool = False) -> Explanation:
        """Return the Route of a call with the source of each key; ``fresh`` re-reads the rules."""
        layers = list(self._sources(name, args, kwargs or {}, options or {}, task, fresh))
        queue_source, queue_name = next(
            ((source, keys["queue"]) for source, keys in layers if keys.get("queue")),
            (DEFAULT_QUEUE, self.default_queue),
        )
        merged: dict[str, Any] = {}
        sources = {"queue": queue_source}
        for source, keys in layers:
            for key, value in keys.items():
                if value is None or key in merged or key == "queue":
                    continue
                if keys.get("queue") not in (None, "", queue_name) and key != "priority":
                    continue  # the exchange and routing key of another queue
                merged[key] = value
                sources[key] = source
        if "priority" not in merged and self.default_priority is not None:
            merged["priority"], sources["priority"] = self.default_priority, DEFAULT_PRIORITY
        return Explanation(route=self._build(queue_name, merged, sources), sources=sources)

    def _sources(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                 options: Mapping[str, Any], task: Any, fresh: bool) -> Iterator[tuple[str, dict]]:
        yield CALL_OPTION, {k: v for k, v in options.items() if k in ROUTE_KEYS and v is not None}
        rule = self.rules.current(fresh=fresh).first(name) if self.rules is not None else None
        if rule is not None:
            yield f'rule "{rule.name}"', dict(rule.route)
        # Routers are asked even when a queue is given: their other keys (priority,
        # routing_key) still apply beneath the higher sources, as in Celery.
        for router in self.routers:
            answer = router(name, args, kwargs, options, task=task)
            if answer:
                yield TASK_ROUTES, expand(answer)
                break
        yield TASK_OPTION, {key: getattr(task, key, None) for key in _TASK_ROUTE_ATTRIBUTES}

    def _build(self, queue_name: str, merged: Mapping[str, Any], sources: dict[str, str]) -> Route:
        if queue_name == self.default_queue:
            exchange = merged.get("exchange") or self.default_exchange
            routing_key = merged.get("routing_key") or self.default_routing_key
        else:
            exchange = merged.get("exchange") or queue_name
            routing_key = merged.get("routing_key") or queue_name
        sources.setdefault("exchange", sources["queue"])
        sources.setdefault("routing_key", sources["queue"])
        return Route(
            queue=self.queue(queue_name, exchange, routing_key, merged.get("exchange_type") or "direct"),
            exchange=exchange,
            routing_key=routing_key,
            priority=merged.get("priority"),
        )

    def queue(self, name: str, exchange: str | None = None, routing_key: str | None = None,
              exchange_type: str = "direct") -> Queue:
        """Return the kombu Queue declaration for ``name`` (cached, so declares are cached too)."""
        exchange = exchange or name
        routing_key = routing_key or name
        key = (name, exchange, routing_key)
        queue = self._queues.get(key)
        if queue is None:
            if name != self.default_queue and not self.create_missing_queues:
                raise ImproperlyConfigured(
                    f"queue {name!r} is not declared and task_create_missing_queues is off"
                )
            queue = Queue(name, Exchange(exchange, type=exchange_type), routing_key=routing_key)
            self._queues[key] = queue
        return queue
