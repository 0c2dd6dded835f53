"""Exceptions, under Celery's names where Celery has one (pure layer)."""

from __future__ import annotations

import builtins

from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured


class DjtasksError(Exception):
    """Root of every error djtasks raises on purpose."""


class ImproperlyConfigured(DjtasksError, DjangoImproperlyConfigured):
    """The DJTASKS settings, or a task's options, are wrong."""


class OperationalError(DjtasksError):
    """The broker could not be reached after the retry policy ran out."""


class DatabaseUnavailable(DjtasksError):
    """A database kept failing for longer than ``database_retry_timeout``: the process stops."""


class ProtocolError(DjtasksError):
    """A message does not follow Celery's task message protocol v2."""

    #: What the dead letter of such a message says, for a program to read.
    reason_code = "invalid_envelope"


class ContentDisallowed(ProtocolError):
    """A message's content type is not in ``accept_content``."""

    reason_code = "content_disallowed"


class InvalidEta(ProtocolError):
    """A message's ``eta`` or ``expires`` header is not a time before year 10000 in UTC."""

    reason_code = "invalid_eta"


class MessageTooLarge(ProtocolError):
    """A message's body is over ``task_max_message_size``: not sent, or not decoded."""

    reason_code = "too_large"


class NotRegistered(DjtasksError, KeyError):
    """No task of that name is registered."""

    def __str__(self) -> str:
        return f"task {self.args[0]!r} is not registered"


class AlreadyRegistered(DjtasksError):
    """Two different tasks were defined under one name."""


class TimeoutError(DjtasksError, builtins.TimeoutError):  # noqa: A001 - Celery's name, and still a builtin TimeoutError
    """``AsyncResult.get()`` waited longer than its timeout."""


class RemoteTaskError(DjtasksError):
    """A task failed with an exception type that cannot be imported here."""

    def __init__(self, exc_type: str, message: str) -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.exc_message = message


class WorkerLostError(DjtasksError):
    """The process running the task died before the task returned."""


class TaskRevokedError(DjtasksError):
    """The task was revoked and will not run."""


class IncompleteStream(DjtasksError):
    """A result's tree was walked past a task that is not ready, whose children are unknown."""


class ChordError(DjtasksError):
    """A task of a chord's header failed, so its body will not run."""


class SoftTimeLimitExceeded(Exception):
    """Raised inside a running task when its soft time limit passes; the task may clean up.

    Not a DjtasksError, so that ``except DjtasksError`` in a task does not swallow it.
    """

    def __init__(self, *args: object) -> None:
        # Raised into a thread it is built without arguments; it still says what it is.
        super().__init__(*(args or ("soft time limit exceeded",)))


class TimeLimitExceeded(DjtasksError):
    """The task ran past its hard time limit and its process was killed."""


class Retry(DjtasksError):
    """Raised by ``Task.retry()``: the task was sent again and this run ends in state RETRY.

    ``exc`` is the reason (stored as the RETRY state's result), ``when`` the retry's eta
    (an aware datetime) or countdown (seconds), when known.
    """

    def __init__(self, message: str | None = None, exc: BaseException | None = None,
                 when: object = None, sig: object = None, **_ignored: object) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        #: The call that was sent again (a Signature); eager mode runs it.
        self.sig = sig
        super().__init__(message, exc, when)

    def humanize(self) -> str:
        if isinstance(self.when, int | float):
            return f"in {self.when}s"
        return f"at {self.when}" if self.when is not None else "now"

    def __str__(self) -> str:
        if self.message:
            return self.message
        reason = f": {self.exc!r}" if self.exc is not None else ""
        return f"Retry {self.humanize()}{reason}"


class Ignore(DjtasksError):
    """Raised by a task to end without storing any state (it stores its own, say)."""


class Reject(DjtasksError):
    """Raised by a task to reject its message: dead-lettered, or back to the queue with ``requeue``.

    Only an ``acks_late`` task's message can still be rejected; an early-acked one is gone.
    """

    def __init__(self, reason: object = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)

    def __str__(self) -> str:
        return f"Reject(requeue={self.requeue}): {self.reason}"


class MaxRetriesExceededError(DjtasksError):
    """``Task.retry()`` was called on a task that already used its ``max_retries``."""

    def __init__(self, *args: object, task_args: object = None, task_kwargs: object = None) -> None:
        self.task_args = task_args
        self.task_kwargs = task_kwargs
        super().__init__(*args)
