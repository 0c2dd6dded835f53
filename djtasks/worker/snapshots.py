"""Snapshots of a worker's requests for inspect: active, reserved, scheduled (processes layer).

Each request is described as Celery's ``Request.info()`` describes it, so that ``celery
inspect`` and Flower read djtasks workers unchanged. The consumer's state is read in the
main loop, between two steps, so nothing changes under the reading.

``scheduled`` lists the messages this worker holds in memory until their eta, and the
parked messages (ParkedMessage rows) of the queues it consumes: a parked row belongs to no
one worker, so every worker consuming its queue lists it, with ``"parked": true``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import router
from kombu.serialization import loads

from djtasks import protocol
from djtasks.models import ParkedMessage
from djtasks.registry import TaskRegistry
from djtasks.task import HIDDEN_ARGUMENTS, is_sensitive

if TYPE_CHECKING:
    from djtasks.task import Request
    from djtasks.worker.consumer import Consumer

#: At most this many parked rows are listed by ``scheduled`` (the earliest first).
PARKED_LISTED = 1000


def request_info(message: protocol.TaskMessage, hostname: str, delivery_info: dict, *,
                 time_start: float | None = None, acknowledged: bool = False,
                 worker_pid: int | None = None, sensitive: bool = False) -> dict[str, Any]:
    """Describe one request with the fields of Celery's ``Request.info()``.

    A ``sensitive`` task's arguments are given as their reprs, as Celery's ``safe`` form
    gives them, so inspect never shows what the task hides.
    """
    args: Any = list(message.args)
    kwargs: Any = dict(message.kwargs)
    if sensitive:
        args, kwargs = message.argsrepr or HIDDEN_ARGUMENTS, message.kwargsrepr or HIDDEN_ARGUMENTS
    return {
        "id": message.id, "name": message.task, "args": args,
        "kwargs": kwargs, "type": message.task, "hostname": hostname,
        "time_start": time_start, "acknowledged": acknowledged,
        "delivery_info": {key: delivery_info.get(key) for key in
                          ("exchange", "routing_key", "priority", "redelivered")},
        "worker_pid": worker_pid,
    }


def snapshot_of(request: Request, acknowledged: bool, tasks: TaskRegistry, **extra: Any) -> dict[str, Any]:
    return request_info(request.message, request.hostname or "", request.delivery_info,
                        acknowledged=acknowledged,
                        sensitive=is_sensitive(tasks.get(request.message.task)), **extra)


def active(consumer: Consumer) -> list[dict[str, Any]]:
    """The requests running in the pool now, with their start time and pool process."""
    return [snapshot_of(request, message.acknowledged, consumer.app.tasks,
                     time_start=consumer.started_at.get(task_id),
                     worker_pid=consumer.pool.member_pid(request) or None)
            for task_id, (request, message) in consumer.active.items()
            if not consumer.pool.waiting_for_member(request)]


def reserved(consumer: Consumer) -> list[dict[str, Any]]:
    """The requests received and waiting: for a pool member, a pool slot, or their rate limit."""
    in_pool = [(request, message) for request, message in consumer.active.values()
               if consumer.pool.waiting_for_member(request)]
    waiting = [*in_pool, *consumer.reserved, *consumer.rate_limits.waiting()]
    return [snapshot_of(request, message.acknowledged, consumer.app.tasks) for request, message in waiting]


def scheduled(consumer: Consumer) -> list[dict[str, Any]]:
    """The requests due later: held in memory by this worker, then parked for its queues."""
    held = [{"eta": eta.isoformat(), "priority": _priority(request.delivery_info),
             "request": snapshot_of(request, message.acknowledged, consumer.app.tasks)}
            for eta, request, message in consumer.eta.held()]
    return held + list(parked(consumer.queue_names, consumer.hostname, consumer.app.tasks))


def parked(queues: Iterable[str], hostname: str,
           tasks: TaskRegistry | None = None) -> Iterator[dict[str, Any]]:
    """Describe the parked rows of ``queues``, earliest first (a row that cannot be read is left out)."""
    rows = ParkedMessage.objects.using(router.db_for_read(ParkedMessage)) \
        .filter(queue__in=list(queues)).order_by("eta")[:PARKED_LISTED]
    for row in rows:
        delivery_info = {"exchange": row.exchange, "routing_key": row.routing_key,
                         "priority": row.properties.get("priority"), "redelivered": False}
        try:
            body = loads(bytes(row.body), row.content_type, row.content_encoding,
                         accept=[row.content_type])
            message = protocol.from_wire(row.headers, row.properties, body, delivery_info)
        except Exception:  # noqa: S112 - a row the release loop will report; inspect goes on
            continue
        yield {"eta": row.eta.isoformat(), "priority": _priority(delivery_info), "parked": True,
               "request": request_info(message, hostname, delivery_info, acknowledged=True,
                                       sensitive=is_sensitive(tasks.get(message.task) if tasks else None))}


def query_task(consumer: Consumer, ids: Iterable[str]) -> dict[str, list[Any]]:
    """Return ``{id: [state, request]}`` for the ids this worker runs, reserves or holds."""
    wanted = set(ids)
    found: dict[str, list[Any]] = {}
    for state, requests in (("active", active(consumer)), ("reserved", reserved(consumer)),
                            ("scheduled", [entry["request"] for entry in scheduled(consumer)])):
        for request in requests:
            if request["id"] in wanted and request["id"] not in found:
                found[request["id"]] = [state, request]
    return found


def _priority(delivery_info: dict) -> int:
    return int(delivery_info.get("priority") or 0)
