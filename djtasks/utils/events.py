"""Celery's event messages: their layout, routing keys, exchange and clock (pure layer).

The one place that knows what an event looks like on the wire, as ``protocol.py`` is for
task messages. An event is a JSON object with ``type`` (``worker-heartbeat``,
``task-succeeded``, ...), ``hostname``, ``timestamp`` (seconds since the epoch),
``utcoffset`` (hours west of UTC, as Celery counts them), ``pid`` and ``clock`` (the
sender's Lamport clock), plus the fields of its type. It is published to the ``celeryev``
exchange (topic; fanout on Redis, where kombu's topic routing is not what Celery's
receivers bind to) with the routing key ``type`` with ``-`` made ``.``
(``worker.heartbeat``), not persisted, with the header ``hostname``; so ``celery events``
and Flower read djtasks' events, and djtasks reads Celery's.

Clock rules (Lamport): the sender moves its clock forward for every event it sends, and a
process that receives a clock value (a remote-control command) moves to
``max(own, received) + 1``. kombu's ``LamportClock`` does both.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from kombu import Exchange
from kombu.clocks import LamportClock

__all__ = ["EXCHANGE_NAME", "Clock", "LamportClock", "build_event", "describe_event", "event_exchange",
           "routing_key", "software_info", "utcoffset"]



class Clock(Protocol):
    """What events need of a Lamport clock: kombu's, or a fleet's shared one."""

    @property
    def value(self) -> int: ...

    def forward(self) -> int: ...

    def adjust(self, other: int) -> int: ...


EXCHANGE_NAME = "celeryev"
#: Transient: an event is news, not work; a broker restart may lose it.
DELIVERY_MODE = 1
WORKER_TYPES = ("worker-online", "worker-heartbeat", "worker-offline")
TASK_TYPES = ("task-sent", "task-received", "task-started", "task-succeeded", "task-failed",
              "task-retried", "task-revoked", "task-rejected")
#: Brokers whose receivers (kombu's) bind the event exchange as a fanout.
FANOUT_DRIVERS = frozenset({"redis", "gcpubsub"})


def event_exchange(driver_type: str) -> Exchange:
    """Return the event exchange for a broker of kombu ``driver_type`` (``amqp``, ``redis``...)."""
    kind = "fanout" if driver_type in FANOUT_DRIVERS else "topic"
    return Exchange(EXCHANGE_NAME, type=kind)


def routing_key(event_type: str) -> str:
    """``task-succeeded`` -> ``task.succeeded``."""
    return event_type.replace("-", ".")


def group_of(event_type: str) -> str:
    """``task-succeeded`` -> ``task``; ``worker-heartbeat`` -> ``worker``."""
    return event_type.split("-", 1)[0]


def utcoffset(now: float | None = None) -> int:
    """Hours west of UTC of this machine's local time, as Celery's events carry it."""
    local = time.localtime(now)
    return (time.altzone if local.tm_isdst else time.timezone) // 3600


def build_event(event_type: str, *, hostname: str, clock: int, pid: int | None = None,
                timestamp: float | None = None, **fields: Any) -> dict[str, Any]:
    """Return the body of one event of ``event_type`` with its type's ``fields``."""
    now = time.time() if timestamp is None else timestamp
    return {**fields, "type": event_type, "hostname": hostname, "timestamp": now,
            "utcoffset": utcoffset(now), "pid": os.getpid() if pid is None else pid,
            "clock": clock}


def software_info(version: str) -> dict[str, str]:
    """The ``sw_*`` fields of the worker events."""
    return {"sw_ident": "djtasks", "sw_ver": version, "sw_sys": platform.system()}


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load average, rounded as Celery sends it (zeros where unknown)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def describe_event(event: Mapping[str, Any]) -> str:
    """One line for ``djtasks events --dump``: time, host, type, then the type's fields."""
    when = datetime.fromtimestamp(float(event.get("timestamp") or 0)).isoformat(" ", "seconds")
    common = {"type", "hostname", "timestamp", "utcoffset", "pid", "clock", "local_received"}
    fields = ", ".join(f"{key}={event[key]!r}" for key in sorted(event) if key not in common)
    return f"{when} [{event.get('hostname', '?')}] {event.get('type', '?')} clock={event.get('clock')}" \
           + (f": {fields}" if fields else "")
