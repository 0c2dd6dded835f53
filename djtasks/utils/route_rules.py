"""Routing rules as values: match a task name by exact name, glob or regex (pure layer).

A ``RouteRule`` is what the ``RoutingRule`` table holds, read into a frozen value; a
``RuleSet`` keeps them in their order (``order``, then ``name``) and answers the first
enabled rule that matches a task name. Exact names are found by one dict look-up.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MATCH_KINDS = ("exact", "glob", "regex")
#: The route fields of a rule, as ``task_routes`` names them.
RULE_ROUTE_KEYS = ("queue", "exchange", "exchange_type", "routing_key", "priority")


def compile_pattern(pattern: str, match: str) -> re.Pattern[str]:
    """Return the regex that ``match`` makes of ``pattern``; ``re.error`` if it cannot compile.

    A glob is matched against the whole name (``*`` crosses dots, as in ``task_routes``); a
    regex is searched, so it is anchored only where it says ``^`` or ``$``.
    """
    if match == "exact":
        return re.compile(r"\A" + re.escape(pattern) + r"\Z")
    if match == "glob":
        return re.compile(r"\A" + fnmatch.translate(pattern))
    if match == "regex":
        return re.compile(pattern)
    raise ValueError(f"match: expected one of {', '.join(MATCH_KINDS)}, got {match!r}")


@dataclass(frozen=True)
class RouteRule:
    """One routing rule: which task names it matches and the route keys it gives them."""

    name: str
    pattern: str
    match: str = "glob"
    order: int = 0
    route: Mapping[str, Any] = field(default_factory=dict)

    def matcher(self) -> re.Pattern[str]:
        return compile_pattern(self.pattern, self.match)


class RuleSet:
    """Enabled rules in their order; ``first(name)`` is the rule that routes ``name``."""

    def __init__(self, rules: Iterable[RouteRule] = ()) -> None:
        self.rules = tuple(sorted(rules, key=lambda rule: (rule.order, rule.name)))
        self._compiled: list[tuple[RouteRule, re.Pattern[str]]] = []
        for rule in self.rules:
            try:
                self._compiled.append((rule, rule.matcher()))
            except (re.error, ValueError):
                continue  # a row written around validation: it matches nothing
        self._cache: dict[str, RouteRule | None] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def first(self, name: str) -> RouteRule | None:
        """Return the first rule whose pattern matches ``name``, or None."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        found = next((rule for rule, regex in self._compiled if regex.search(name)), None)
        if len(self._cache) < 10_000:  # task names are few; a flood of send_task names is not kept
            self._cache[name] = found
        return found
