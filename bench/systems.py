"""How each system's worker and client processes are started for one broker and queue."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from bench.brokers import Broker

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class System:
    """One system under test; ``side`` names its client module (``bench.<side>_side``)."""

    key: str
    title: str
    side: str  # "djtasks" or "celery"
    # Celery's result backend when it is not the broker's (``django-db``: django-celery-results).
    results: str | None = None
    # Only the results-on phase and its round trips (no results-off, threads or memory rows).
    stored_only: bool = False
    # At most this many round trips (a backend that polls every 0.5 s takes long).
    latency_cap: int | None = None
    # More worker flags of this system (djtasks-children: --consume-in-children).
    flags: tuple[str, ...] = ()
    # More djtasks settings of its processes, as DJTASKS_* variables.
    settings: tuple[tuple[str, str], ...] = ()

    def supports(self, broker: Broker) -> bool:
        return self.side == "djtasks" or broker.celery_broker is not None

    def worker_argv(self, queue: str, *, concurrency: int, pool: str,
                    events: bool = False) -> list[str]:
        """Return the command line of a worker consuming ``queue``, logging at INFO.

        ``events``: both send task events (``-E``).
        """
        common = ["-Q", queue, "-c", str(concurrency), "-P", pool, "-l", "INFO",
                  "-n", f"bench-{self.key}@%h", *(["-E"] if events else []), *self.flags]
        if self.side == "djtasks":
            return [sys.executable, "-m", "django", "runworker", *common]
        return [sys.executable, "-m", "celery", "-A", "bench.celeryapp", "worker", *common,
                "--without-gossip", "--without-mingle", "--without-heartbeat"]

    def env(self, broker: Broker, queue: str) -> dict[str, str]:
        """Return the environment of this system's processes (worker and clients)."""
        # Nothing of the caller's own djtasks configuration may leak into a run.
        base = {k: v for k, v in os.environ.items() if not k.startswith("DJTASKS_")}
        base.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", BENCH_QUEUE=queue,
                    DJANGO_SETTINGS_MODULE="bench.settings")
        if self.side == "djtasks":
            base.update(DJTASKS_BROKER_URL=broker.djtasks_broker,
                        DJTASKS_RESULT_BACKEND=broker.djtasks_results,
                        DJTASKS_TASK_DEFAULT_QUEUE=queue, **dict(self.settings))
        else:
            base.update(BENCH_CELERY_BROKER_URL=broker.celery_broker or "",
                        BENCH_CELERY_RESULT_BACKEND=self.results or broker.celery_results or "")
        return base


SYSTEMS = {
    "djtasks": System("djtasks", "djtasks", "djtasks"),
    # The prefork pool fed by its parent (the default before 2026-12-06).
    "djtasks-parent-fed": System("djtasks-parent-fed", "djtasks, parent feeds the pool", "djtasks",
                                 flags=("--no-consume-in-children",)),
    # Prefork whose children consume from the broker themselves (worker_consume_in_children,
    # the default since 2026-12-06: the same as "djtasks", kept for the older commands).
    "djtasks-children": System("djtasks-children", "djtasks, children consuming", "djtasks",
                               flags=("--consume-in-children",)),
    # And results written without waiting for the disk (result_synchronous_commit = False).
    "djtasks-children-lazy": System(
        "djtasks-children-lazy", "djtasks, children consuming, result_synchronous_commit off",
        "djtasks", flags=("--consume-in-children",),
        settings=(("DJTASKS_RESULT_SYNCHRONOUS_COMMIT", "false"),)),
    # Task publishes without RabbitMQ's publisher confirms (on by default since 2026-12-07):
    # what confirms cost on the enqueue rows.
    "djtasks-unconfirmed": System(
        "djtasks-unconfirmed", "djtasks, publisher confirms off", "djtasks",
        settings=(("DJTASKS_BROKER_TRANSPORT_OPTIONS", '{"confirm_publish": false}'),)),
    "celery": System("celery", f"Celery {version('celery')}", "celery"),
    # What a Django user of Celery has: results in the bench's PostgreSQL database. Its
    # AsyncResult.get() polls the database every 0.5 s (Celery's default interval).
    "celery-djangodb": System("celery-djangodb", f"Celery {version('celery')} + django-celery-results",
                              "celery", results="django-db", stored_only=True, latency_cap=200),
}

#: What ``--systems`` runs when not given: each configuration once.
DEFAULT_SYSTEMS = ("djtasks", "djtasks-parent-fed", "celery", "celery-djangodb")
