"""Signals with Celery's names, as Django signals (pure layer).

``connect`` also works as a bare decorator, as Celery's does: ``@on_after_configure.connect``
keeps the function (Django's returns None, which would leave a weak receiver to be
collected at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.dispatch import Signal


class CelerySignal(Signal):
    """A Django Signal whose ``connect`` returns the receiver, so it can decorate."""

    def connect(self, receiver: Callable[..., Any] | None = None, sender: Any = None,
                weak: bool = True, dispatch_uid: str | None = None) -> Any:
        if receiver is None:  # @signal.connect(sender=..., weak=...)
            def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
                super(CelerySignal, self).connect(func, sender, weak, dispatch_uid)
                return func

            return decorate
        super().connect(receiver, sender, weak, dispatch_uid)
        return receiver


#: Sent once per app, with ``sender=app``, before beat reads its schedule: the place to
#: call ``sender.add_periodic_task(...)``.
on_after_configure = CelerySignal()

# -- tasks (Celery's names and keyword arguments) ------------------------------------------
#: In the publishing process, before and after a task message goes to the broker;
#: ``sender`` is the task name. Arguments: body, exchange, routing_key, headers, properties.
before_task_publish = CelerySignal()
after_task_publish = CelerySignal()
#: In the worker's main process when a task message is reserved; ``sender`` is the consumer,
#: ``request`` the job.
task_received = CelerySignal()
#: Where the task runs (a pool member), around its body; ``sender`` is the task.
#: task_prerun: task_id, task, args, kwargs; task_postrun: the same plus retval and state.
task_prerun = CelerySignal()
task_postrun = CelerySignal()
#: task_success: result. task_failure: task_id, exception, args, kwargs, traceback, einfo.
#: task_retry: request, reason, einfo.
task_success = CelerySignal()
task_failure = CelerySignal()
task_retry = CelerySignal()
#: In the worker's main process: a revoked or expired task skipped (request, terminated,
#: signum, expired); a message that is not a task (message, exc); a task name this worker
#: does not know (name, id, message, exc).
task_revoked = CelerySignal()
task_rejected = CelerySignal()
task_unknown = CelerySignal()

# -- the worker ----------------------------------------------------------------------------
#: ``sender`` is the worker: before it connects, once it consumes, as it shuts down.
worker_init = CelerySignal()
worker_ready = CelerySignal()
worker_shutdown = CelerySignal()
#: In each new prefork pool process, before it runs any task (``sender`` is None).
worker_process_init = CelerySignal()
