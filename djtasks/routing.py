"""Router: which queue a call goes to, from task_routes in every form Celery accepts (client layer).

Forms of ``task_routes`` (each as in Celery's routing guide):

- a dict ``{"name" | "glob.*" | re.Pattern: "queue" | {"queue": ..., ...}}``;
- a callable ``router(name, args, kwargs, options, task=None, **kw) -> route | None``;
- a dotted path string naming such a callable;
- a list or tuple of any of the above, or of ``(pattern, route)`` pairs, tried in order.

The first router that answers wins. Explicit ``apply_async`` options beat task attributes,
which beat the route, which beats ``task_default_queue``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string
from kombu import Exchange, Queue

from djtasks.exceptions import ImproperlyConfigured

RouteFn = Callable[..., Any]
ROUTE_KEYS = frozenset({"queue", "exchange", "routing_key", "priority", "exchange_type"})


@dataclass(frozen=True)
class Route:
    """Where one message goes."""

    queue: Queue
    exchange: str
    routing_key: str
    priority: int | None = None


class Router:
    """Resolve a Route for a task call."""

    def __init__(self, routes: Any, default_queue: str, create_missing_queues: bool = True,
                 default_exchange: str | None = None, default_routing_key: str | None = None) -> None:
        self.routers: list[RouteFn] = compile_routes(routes)
        self.default_queue = default_queue
        self.default_exchange = default_exchange or default_queue
        self.default_routing_key = default_routing_key or default_queue
        self.create_missing_queues = create_missing_queues
        self._queues: dict[tuple[str, str, str], Queue] = {}

    def route(self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
              options: Mapping[str, Any], task: Any = None) -> Route:
        """Return the Route of a call; ``options`` hold explicit and task-level settings."""
        # Routers are asked even when a queue is given: their other keys (priority,
        # routing_key) still apply beneath the explicit options, as in Celery.
        found: dict[str, Any] = {}
        for router in self.routers:
            answer = router(name, args, kwargs, options, task=task)
            if answer:
                found = expand(answer)
                break
        explicit_queue = options.get("queue")
        if explicit_queue and found.get("queue") not in (None, explicit_queue):
            # The route's exchange and routing key belong to the route's queue, not this one.
            found = {k: v for k, v in found.items() if k == "priority"}
        merged = {**found, **{k: v for k, v in options.items() if k in ROUTE_KEYS and v is not None}}
        queue_name = merged.get("queue") or self.default_queue
        if queue_name == self.default_queue:
            exchange = merged.get("exchange") or self.default_exchange
            routing_key = merged.get("routing_key") or self.default_routing_key
        else:
            exchange = merged.get("exchange") or queue_name
            routing_key = merged.get("routing_key") or queue_name
        return Route(
            queue=self.queue(queue_name, exchange, routing_key, merged.get("exchange_type", "direct")),
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


def expand(answer: Any) -> dict[str, Any]:
    """Turn a router's answer (a queue name or a dict) into a dict of route keys."""
    if isinstance(answer, str):
        return {"queue": answer}
    if isinstance(answer, Queue):
        return {"queue": answer.name, "exchange": answer.exchange.name,
                "routing_key": answer.routing_key}
    if isinstance(answer, Mapping):
        unknown = set(answer) - ROUTE_KEYS
        if unknown:
            raise ImproperlyConfigured(
                f"task_routes: unknown route key(s) {sorted(unknown)}, expected some of "
                f"{sorted(ROUTE_KEYS)}"
            )
        return dict(answer)
    raise ImproperlyConfigured(f"task_routes: expected a queue name or a dict, got {answer!r}")


def compile_routes(routes: Any) -> list[RouteFn]:
    """Turn ``task_routes`` into an ordered list of router callables."""
    if routes is None:
        return []
    if isinstance(routes, (Mapping, str)) or callable(routes):
        routes = [routes]
    if not isinstance(routes, (list, tuple)):
        raise ImproperlyConfigured(f"task_routes: expected a dict, list or callable, got {routes!r}")
    if routes and all(_is_pair(item) for item in routes):
        return [PatternRouter(routes)]
    return [_compile_one(item) for item in routes]


def _compile_one(item: Any) -> RouteFn:
    if isinstance(item, Mapping):
        return PatternRouter(list(item.items()))
    if isinstance(item, str):
        try:
            found = import_string(item)
        except ImportError as exc:
            raise ImproperlyConfigured(f"task_routes: cannot import router {item!r}: {exc}") from exc
        return _compile_one(found)
    if isinstance(item, (list, tuple)) and all(_is_pair(pair) for pair in item):
        return PatternRouter(list(item))
    if callable(item):
        return item
    raise ImproperlyConfigured(f"task_routes: expected a dict, pairs or a callable, got {item!r}")


def _is_pair(item: Any) -> bool:
    return (isinstance(item, (list, tuple)) and len(item) == 2
            and isinstance(item[0], (str, re.Pattern)))


class PatternRouter:
    """Match the task name against exact names, ``*`` globs and compiled regexes, in order."""

    def __init__(self, pairs: Sequence[tuple[str | re.Pattern, Any]]) -> None:
        self.exact: dict[str, Any] = {}
        self.patterns: list[tuple[re.Pattern, Any]] = []
        for pattern, route in pairs:
            expand(route)  # fail at start-up, not at the first call
            if isinstance(pattern, re.Pattern):
                self.patterns.append((pattern, route))
            elif any(ch in pattern for ch in "*?["):
                self.patterns.append((re.compile(fnmatch.translate(pattern)), route))
            else:
                self.exact.setdefault(pattern, route)

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name in self.exact:
            return self.exact[name]
        for pattern, route in self.patterns:
            if pattern.match(name):
                return route
        return None
