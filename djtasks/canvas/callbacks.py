"""Callbacks and errbacks: what a finished call sets off, by Celery's rules (client layer).

The worker (after a message) and eager runs (after ``Task.apply``) both come here, so the
two follow one rule: after a success each callback gets the value prepended to its
arguments (unless immutable) and the next chain step is called with it; after a failure
each errback is called. ``eager`` says how: ``apply()`` here and now, or ``apply_async()``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from djtasks import states
from djtasks.canvas.signature import Signature, signature_list
from djtasks.exceptions import NotRegistered
from djtasks.utils.log import loggable

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.backends.base import ResultMeta
    from djtasks.task import Request

logger = logging.getLogger("djtasks.canvas")

#: What an eager run calls once its outcome is known; returns the results it set off.
FollowUp = Callable[["Request", "ResultMeta"], list[Any]]


def call_callbacks(app: App, callbacks: Iterable[Any], chain: Iterable[Any], value: Any,
                   origin: Mapping[str, Any], *, eager: bool = False) -> list[Any]:
    """Call each callback, then the next step of ``chain``, with ``value``; return their results.

    ``chain`` is the message's embed: the steps still to run, last step first. ``origin``
    holds the ``parent_id`` and ``root_id`` the calls get.
    """
    results = [_caller(Signature.from_dict(data, app), eager)((value,), **origin)
               for data in callbacks]
    remaining = list(chain)
    if remaining:
        step = Signature.from_dict(remaining.pop(), app)
        results.append(_caller(step, eager)((value,), chain=remaining, **origin))
    return results


def call_errbacks(app: App, errbacks: Iterable[Any], request: Request, exc: BaseException,
                  traceback: str | None, *, eager: bool = False) -> list[Any]:
    """Call each errback as Celery does; return the results of those run as tasks.

    A task whose body takes more than one argument is called here and now with
    ``(request, exc, traceback)``; any other errback is called with the failed task's id.
    """
    results: list[Any] = []
    for data in errbacks:
        errback = Signature.from_dict(data, app)
        try:
            if takes_request(errback, app):
                errback(request, exc, traceback)
            else:
                results.append(_caller(errback, eager)(
                    (request.id,), parent_id=request.id, root_id=request.root_id or request.id))
        except Exception:
            # One broken errback must not keep the others, or the worker, from going on.
            logger.exception("Errback %r of task %s raised", errback, loggable(request.id))
    return results


def eager_follow_up(app: App, options: Mapping[str, Any]) -> FollowUp | None:
    """Return what an eager call with these options sets off once it has run, or None.

    ``link`` and the ``chain`` embed after a success, ``link_error`` after a failure; all
    run eagerly, so an eager canvas never needs a broker.
    """
    link = signature_list(options.get("link"), app)
    link_error = signature_list(options.get("link_error"), app)
    chain = list(options.get("chain") or ())
    if not (link or link_error or chain):
        return None

    def follow_up(request: Request, meta: ResultMeta) -> list[Any]:
        if meta.status == states.SUCCESS:
            origin = {"parent_id": request.id, "root_id": request.root_id or request.id}
            return call_callbacks(app, link, chain, meta.result, origin, eager=True)
        if meta.status == states.FAILURE:
            return call_errbacks(app, link_error, request, meta.result, meta.traceback, eager=True)
        return []  # ignored or rejected: nothing follows, as with a worker

    return follow_up


def takes_request(errback: Signature, app: App) -> bool:
    """True when the errback's task takes ``(request, exc, traceback)`` (more than one arg)."""
    try:
        run = app.tasks[errback.task].run
    except NotRegistered:
        return False
    try:
        parameters = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > 1 or any(p.kind is p.VAR_POSITIONAL for p in parameters)


def _caller(sig: Signature, eager: bool) -> Callable[..., Any]:
    return sig.apply if eager else sig.apply_async
