"""task_routes in every form Celery accepts, compiled into router callables (client layer).

Forms of ``task_routes`` (each as in Celery's routing guide):

- a dict ``{"name" | "glob.*" | re.Pattern: "queue" | {"queue": ..., ...}}``;
- a callable ``router(name, args, kwargs, options, task=None, **kw) -> route | None``;
- a dotted path string naming such a callable;
- a list or tuple of any of the above, or of ``(pattern, route)`` pairs, tried in order.

The first router that answers wins; ``djtasks.routing.router`` places its answer among the
other sources of a route.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.utils.module_loading import import_string
from kombu import Queue

from djtasks.exceptions import ImproperlyConfigured

RouteFn = Callable[..., Any]
ROUTE_KEYS = frozenset({"queue", "exchange", "routing_key", "priority", "exchange_type"})


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
