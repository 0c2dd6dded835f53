"""Remote control of a fleet: the parent answers, from its children's books (processes layer).

The parent owns the mailbox, so Celery's tools see one worker. A question about tasks goes
to every child and the answers are merged into the one reply Celery's shape has; a change
(a rate limit, revoking, events on or off) is made in the parent and sent to each child.
``add_consumer``/``cancel_consumer`` are checked against the parent's list of queues, which
the children mirror, so the parent can answer at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from djtasks.worker.fleet.supervisor import Fleet

if TYPE_CHECKING:
    from djtasks.worker.control import WorkerControl

#: Questions whose answers are lists: the children's lists, one after the other.
LISTS = ("active", "reserved", "scheduled")
#: Changes made in the parent and sent to every child.
BROADCAST = ("enable_events", "disable_events")
#: Changes the parent answers once every child made them (or AWAIT_TIMEOUT passed: a child
#: busy with a long task changes its queues after that task), so that a message sent after
#: the answer finds the children consuming, and limiting, as the answer says.
AWAITED = ("rate_limit", "time_limit", "add_consumer", "cancel_consumer")
AWAIT_TIMEOUT = 3.0


def wire(control: WorkerControl, fleet: Fleet) -> None:
    """Point ``control``'s handlers at the fleet's children where the answer is theirs."""
    handlers = control.handlers
    for name in LISTS:
        handlers[name] = _concatenated(fleet, name)
    handlers["query_task"] = _merged_dicts(fleet, "query_task")
    handlers["revoked"] = _revoked(fleet, handlers["revoked"])
    handlers["stats"] = _stats(fleet, handlers["stats"])
    handlers["revoke"] = _revoke(fleet, handlers["revoke"])
    for name in BROADCAST:
        handlers[name] = _broadcast(fleet, name, handlers[name])
    for name in AWAITED:
        handlers[name] = _awaited(fleet, name, handlers[name])


def _concatenated(fleet: Fleet, name: str) -> Callable[..., list[Any]]:
    def handler(**arguments: Any) -> list[Any]:
        return [entry for answer in fleet.gather(name, arguments) if isinstance(answer, list)
                for entry in answer]
    return handler


def _merged_dicts(fleet: Fleet, name: str) -> Callable[..., dict[str, Any]]:
    def handler(**arguments: Any) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for answer in fleet.gather(name, arguments):
            if isinstance(answer, dict) and "error" not in answer:
                merged.update(answer)
        return merged
    return handler


def _revoked(fleet: Fleet, own: Callable[..., list[str]]) -> Callable[..., list[str]]:
    def handler(**arguments: Any) -> list[str]:
        known = dict.fromkeys(own(**arguments))
        for answer in fleet.gather("revoked", arguments):
            known.update(dict.fromkeys(answer if isinstance(answer, list) else []))
        return list(known)
    return handler


def _stats(fleet: Fleet, own: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def handler(**arguments: Any) -> dict[str, Any]:
        reply = own(**arguments)
        totals: Counter[str] = Counter()
        for answer in fleet.gather("stats", arguments):
            if isinstance(answer, dict):
                totals.update(answer.get("total") or {})
        reply["total"] = dict(totals)
        return reply
    return handler


def _revoke(fleet: Fleet, own: Callable[..., dict[str, str]]) -> Callable[..., dict[str, str]]:
    # The parent stores the revocation and terminates through the fleet (its kill_job reads
    # the slots); the children hear of it now rather than at their next refresh.
    def handler(**arguments: Any) -> dict[str, str]:
        fleet.tell_all("revoke", {**arguments, "terminate": False})
        return own(**arguments)
    return handler


def _awaited(fleet: Fleet, name: str, own: Callable[..., Any]) -> Callable[..., Any]:
    def handler(**arguments: Any) -> Any:
        reply = own(**arguments)
        if not (isinstance(reply, dict) and "error" in reply):
            fleet.gather(name, arguments, timeout=AWAIT_TIMEOUT)
        return reply
    return handler


def _broadcast(fleet: Fleet, name: str, own: Callable[..., Any]) -> Callable[..., Any]:
    def handler(**arguments: Any) -> Any:
        reply = own(**arguments)
        if not (isinstance(reply, dict) and "error" in reply):
            fleet.tell_all(name, arguments)
        return reply
    return handler
