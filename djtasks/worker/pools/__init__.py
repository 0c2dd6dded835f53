"""Execution pools of the worker, by Celery's names: prefork, threads, solo (processes layer)."""

from __future__ import annotations

from types import MappingProxyType

from djtasks.exceptions import ImproperlyConfigured
from djtasks.worker.pools.base import (
    Outcome,
    Pool,
    PoolFull,
    PoolStartError,
    TargetFailure,
    WorkerLost,
)
from djtasks.worker.pools.prefork import PreforkPool
from djtasks.worker.pools.solo import SoloPool
from djtasks.worker.pools.threads import ThreadsPool

POOLS: MappingProxyType[str, type[Pool]] = MappingProxyType(
    {pool.name: pool for pool in (PreforkPool, ThreadsPool, SoloPool)})


def get_pool_class(name: str) -> type[Pool]:
    """Return the pool class named ``name`` (the ``worker_pool`` setting, ``-P``)."""
    try:
        return POOLS[name]
    except KeyError:
        raise ImproperlyConfigured(f"pool: expected one of {sorted(POOLS)}, got {name!r}") from None


__all__ = [
    "POOLS",
    "Outcome",
    "Pool",
    "PoolFull",
    "PoolStartError",
    "PreforkPool",
    "SoloPool",
    "TargetFailure",
    "ThreadsPool",
    "WorkerLost",
    "get_pool_class",
]
