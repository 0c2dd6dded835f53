"""Feature and Features: the worker's features as hook objects (processes layer).

The consumer runs one pipeline per message: build its request, reserve it, start it on the
pool, settle it when it is done. Each feature (results, retries, time limits, rate limits,
ETA, revoke, events, acks, ...) is a small Feature subclass that overrides the hooks it
needs; the others are no-ops and cost nothing, since Features calls only the features that
override a hook. "before" hooks run in the order of the list, "after" hooks in reverse, so
a feature sees its own after-hook inside everything it wrapped, as middleware does.

A hook that raises is logged and the message goes on as if the hook had not been there,
with one exception: a DatabaseError goes up to the consumer's loop, which does the step
again once the database answers (nothing is dropped while it is away).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from django.db import DatabaseError

from djtasks.conf import Settings
from djtasks.protocol import TaskMessage
from djtasks.worker.pools.base import Outcome
from djtasks.worker.settlement import Fate

logger = logging.getLogger("djtasks.worker")

HOOKS = ("before_job", "before_reserve", "before_start", "on_running", "after_start",
         "before_complete", "after_complete")


class Feature:
    """One worker feature: the task options it owns, and no-op hooks to override."""

    #: Task options (``@task(...)`` keywords, Task attributes) this feature gives meaning to.
    options: ClassVar[frozenset[str]] = frozenset()

    def before_job(self, message: TaskMessage, task: Any, settings: Settings) -> Mapping[str, Any]:
        """Return the fields of the request that this feature decides (e.g. its time limits)."""
        return {}

    def before_reserve(self, request: Any, message: Any) -> bool:
        """A message was received; False: the feature keeps it (e.g. it is due later)."""
        return True

    def before_start(self, request: Any, message: Any) -> bool:
        """The request is about to go to the pool; False: the feature settled it instead."""
        return True

    def on_running(self, request: Any, message: Any) -> None:
        """The request runs on a pool member, or is about to (see Pool.runs_in_submit)."""

    def after_start(self, request: Any, message: Any) -> None:
        """The request went to a pool member (solo: submit() ran it, and it is over)."""

    def before_complete(self, request: Any, outcome: Outcome) -> bool:
        """The request is over; False: the feature recorded how it ended (its message is acked)."""
        return True

    def after_complete(self, request: Any, outcome: Outcome, fate: Fate) -> None:
        """The request is over and ``fate`` is what becomes of its acks_late message."""

    def __repr__(self) -> str:
        return f"<feature {type(self).__name__}>"


class Features:
    """Run the hooks of a list of features, in order (before) or in reverse (after)."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self.all = list(features)
        # Only the features that override a hook are called for it: a message pays for the
        # features it uses, never for the no-ops.
        self._hooked = {hook: [getattr(feature, hook) for feature in self.all
                               if getattr(type(feature), hook) is not getattr(Feature, hook)]
                        for hook in HOOKS}
        for hook in HOOKS:
            if hook.startswith("after_"):
                self._hooked[hook].reverse()

    def __iter__(self) -> Any:
        return iter(self.all)

    def find(self, kind: type[Feature]) -> Any:
        """Return the first feature of class ``kind``; LookupError if there is none."""
        for feature in self.all:
            if isinstance(feature, kind):
                return feature
        raise LookupError(f"no {kind.__name__} among the worker's features")

    def request_fields(self, message: TaskMessage, task: Any, settings: Settings) -> dict[str, Any]:
        """Merge what each feature decides of the request built for ``message``."""
        fields: dict[str, Any] = {}
        for hook in self._hooked["before_job"]:
            # Not guarded: a field a feature cannot decide (a bad time limit) makes the
            # message unreadable, and the consumer rejects it as such.
            fields.update(hook(message, task, settings))
        return fields

    def before_reserve(self, request: Any, message: Any) -> bool:
        return self._until_false("before_reserve", request, message)

    def before_start(self, request: Any, message: Any) -> bool:
        return self._until_false("before_start", request, message)

    def on_running(self, request: Any, message: Any) -> None:
        for hook in self._hooked["on_running"]:
            _guarded(hook, request, request, message)

    def after_start(self, request: Any, message: Any) -> None:
        for hook in self._hooked["after_start"]:
            _guarded(hook, request, request, message)

    def before_complete(self, request: Any, outcome: Outcome) -> bool:
        return self._until_false("before_complete", request, outcome)

    def after_complete(self, request: Any, outcome: Outcome, fate: Fate) -> None:
        for hook in self._hooked["after_complete"]:
            _guarded(hook, request, request, outcome, fate)

    def _until_false(self, name: str, request: Any, *args: Any) -> bool:
        # A feature that says False has settled the request: the ones after it are not asked.
        return all(_guarded(hook, request, request, *args) is not False for hook in self._hooked[name])


def task_options(features: Sequence[type[Feature]]) -> frozenset[str]:
    """Return the union of the task options ``features`` own."""
    return frozenset().union(*(feature.options for feature in features))


def _guarded(hook: Any, request: Any, *args: Any) -> Any:
    try:
        return hook(*args)
    except DatabaseError:
        raise  # the consumer does this step again once the database answers
    except Exception:
        logger.exception("The worker feature hook %s raised for %s; the worker goes on",
                         getattr(hook, "__qualname__", hook), getattr(request, "label", request))
        return None
