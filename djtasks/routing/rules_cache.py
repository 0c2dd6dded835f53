"""RulesCache: this process's copy of the routing rules, re-read every few seconds (client layer).

Publishing asks ``current()`` on every call; it reads the store only when
``routing_rules_refresh`` seconds have passed since the last read, so between refreshes a
publish costs a clock read and a dict look-up, never a query. The clock is passed in, so
tests move time by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from djtasks.utils.route_rules import RouteRule, RuleSet

logger = logging.getLogger("djtasks.routing")

#: Reads the rules; None means "not yet" (Django is still loading), ask again on next use.
RulesReader = Callable[[], Sequence[RouteRule] | None]


class RulesCache:
    """The last rules read, and when to read them again."""

    def __init__(self, read: RulesReader, refresh: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read = read
        self.refresh = refresh
        self.clock = clock
        self._rules = RuleSet()
        self._next_read = float("-inf")
        self._failing = False
        self._lock = threading.Lock()

    def current(self, fresh: bool = False) -> RuleSet:
        """Return the rules in force, reading them first if they are due (or ``fresh``)."""
        if not fresh and self.clock() < self._next_read:
            return self._rules
        # One thread reads; the others publish by the rules they have meanwhile.
        if not self._lock.acquire(blocking=fresh):
            return self._rules
        try:
            if fresh or self.clock() >= self._next_read:
                self._reload()
        finally:
            self._lock.release()
        return self._rules

    def _reload(self) -> None:
        self._next_read = self.clock() + self.refresh
        try:
            rules = self.read()
        except Exception as exc:  # any failure: the rules last read keep applying
            if not self._failing:
                self._failing = True
                logger.warning("routing rules: cannot read them (%s: %s); the %d rule(s) last read "
                               "keep applying", type(exc).__name__, exc, len(self._rules))
            return
        if rules is None:
            self._next_read = float("-inf")
            return
        if self._failing:
            self._failing = False
            logger.info("routing rules: read again (%d enabled)", len(rules))
        ordered = tuple(sorted(rules, key=lambda rule: (rule.order, rule.name)))
        if ordered != self._rules.rules:  # unchanged: keep the compiled patterns and answers
            self._rules = RuleSet(ordered)
