"""What a worker says about itself: inspect ``stats``, ``conf`` and ``report`` (processes layer).

The shapes are Celery's, so ``celery inspect stats`` and Flower read them: ``total`` per
task, ``pid``, ``clock``, ``uptime``, ``pool``, ``broker`` (the connection's description
without its password), ``prefetch_count`` and ``rusage``. Fields that come from events
(task timings, the event clock) are left out.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import kombu

from djtasks.conf import censor, censor_url

if TYPE_CHECKING:
    from djtasks.worker.consumer import Consumer

RUSAGE_FIELDS = ("utime", "stime", "maxrss", "ixrss", "idrss", "isrss", "minflt", "majflt",
                 "nswap", "inblock", "oublock", "msgsnd", "msgrcv", "nsignals", "nvcsw", "nivcsw")


def stats(consumer: Consumer, started: float, clock: int) -> dict[str, Any]:
    """Describe the worker; ``started`` is its ``time.monotonic()`` at start."""
    return {
        "total": dict(consumer.stats.totals),
        "pid": os.getpid(),
        "clock": str(clock),
        "uptime": int(time.monotonic() - started),
        "pool": pool_info(consumer),
        "broker": broker_info(consumer.connection),
        "prefetch_count": consumer.prefetch_count,
        "rusage": rusage(),
    }


def pool_info(consumer: Consumer) -> dict[str, Any]:
    pool, settings = consumer.pool, consumer.app.settings
    return {
        "implementation": f"{type(pool).__module__}:{type(pool).__name__}",
        "max-concurrency": pool.limit,
        "processes": pool.info().get("processes") or [os.getpid()],
        "max-tasks-per-child": pool.max_tasks_per_child or "N/A",
        "max-memory-per-child": pool.max_memory_per_child or "N/A",
        "put-guarded-by-semaphore": False,
        "timeouts": [settings.task_soft_time_limit or 0, settings.task_time_limit or 0],
    }


def broker_info(connection: kombu.Connection | None) -> dict[str, Any]:
    """The connection's ``info()`` with its password removed and secret options censored."""
    if connection is None:
        return {}
    info = plain(connection.info())
    info.pop("password", None)
    info["transport_options"] = {key: censor(key, value)
                                 for key, value in (info.get("transport_options") or {}).items()}
    info["alternates"] = [censor_url(url) for url in info.get("alternates") or ()]
    return info


def rusage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {field: getattr(usage, f"ru_{field}") for field in RUSAGE_FIELDS}


def conf(consumer: Consumer) -> dict[str, Any]:
    """The worker's settings, secrets censored (as ``djtasks config`` prints them)."""
    return plain(consumer.app.settings.censored())


def report(consumer: Consumer) -> str:
    """A text to paste in a bug report: versions, platform, broker, settings censored."""
    lines = [
        "software -> " + " ".join(f"{name}:{_version(name)}" for name in ("djtasks", "kombu", "django")),
        f"            py:{platform.python_version()} ({platform.python_implementation()})",
        f"platform -> system:{platform.system()} arch:{platform.machine()} "
        f"kernel:{platform.release()}",
        f"broker   -> {censor_url(consumer.app.settings.broker_url)}",
        f"pool     -> {consumer.pool.name} ({consumer.pool.limit})",
        "",
    ]
    settings = conf(consumer)
    lines += [f"{key}: {settings[key]!r}" for key in sorted(settings)]
    return "\n".join(lines)


def plain(value: Any) -> Any:
    """``value`` as JSON can carry it (what does not serialize becomes its repr)."""
    return json.loads(json.dumps(value, default=repr))


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
