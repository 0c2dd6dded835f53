"""The revoke feature: expired and revoked messages, and terminated requests (processes layer).

A message past its ``expires``, or whose id was revoked, is not run: it is acknowledged
and REVOKED is stored; its chord fails instead of hanging and the rest of its chain is
marked failed, as if it had raised TaskRevokedError. A request ended by
``revoke(terminate=True)`` is recorded the same way when its member reports back.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError

from djtasks import signals, states
from djtasks.application import App
from djtasks.backends.base import exception_to_dict
from djtasks.exceptions import TaskRevokedError
from djtasks.worker.events import TaskEvents
from djtasks.worker.features.base import Feature
from djtasks.worker.pools.base import Outcome
from djtasks.worker.revocations import Revocations
from djtasks.worker.workflow import Workflow

logger = logging.getLogger("djtasks.worker")


class Revoke(Feature):
    """Skip expired and revoked requests; record the terminated ones."""

    options = frozenset({"expires"})

    def __init__(self, app: App, revocations: Revocations, workflow: Workflow,
                 events: TaskEvents) -> None:
        self.app = app
        self.revocations = revocations
        self.workflow = workflow
        self.events = events

    def before_reserve(self, request: Any, message: Any) -> bool:
        self.revocations.message_received()
        return True

    def before_start(self, request: Any, message: Any) -> bool:
        expires = request.message.expires
        if expires is not None and expires <= datetime.now(UTC):
            logger.warning("Task %s expired at %s; not run", request.label, expires.isoformat())
            self.skip(request, message, "expired")
            return False
        if request.message.id in self.revocations:
            logger.warning("Discarding revoked task: %s", request.label)
            self.skip(request, message, "revoked")
            return False
        return True

    def before_complete(self, request: Any, outcome: Outcome) -> bool:
        signum = self.revocations.terminated_by(request.message.id)  # revoke(terminate=True)
        if signum is None:
            return True
        try:
            self.store_revoked(request, "terminated")
        except DatabaseError:
            self.revocations.mark_terminated(request.message.id, signum)  # asked again
            raise
        signals.task_revoked.send_robust(sender=self.app.tasks.get(request.message.task), request=request,
                                         terminated=True, signum=signum, expired=False)
        self.events.revoked(request.message.id, terminated=True, signum=signum)
        return False

    def skip(self, request: Any, message: Any, reason: str) -> None:
        """Do not run ``request``: store REVOKED with ``reason``, fail its canvas, ack it."""
        # Stored before the ack: if the store fails, the message is still ours to skip again.
        self.store_revoked(request, reason)
        message.ack()
        self.events.revoked(request.message.id, expired=reason == "expired")
        signals.task_revoked.send_robust(sender=self.app.tasks.get(request.message.task), request=request,
                                         terminated=False, signum=None, expired=reason == "expired")

    def store_revoked(self, request: Any, reason: str) -> None:
        """Store REVOKED with ``reason`` for ``request``, and fail its canvas."""
        error = TaskRevokedError(reason)
        self.app.backend.store(request.message.id, states.REVOKED, exception_to_dict(error))
        try:
            self.workflow.fail_steps(request.message.chain or (), error, "")
            self.workflow.count_in_chord(request.message, failed=True)
        except Exception:
            logger.exception("Could not fail the canvas of skipped task %s", request.label)
