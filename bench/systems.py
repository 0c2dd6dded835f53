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
    key: str
    title: str

    def supports(self, broker: Broker) -> bool:
        return self.key == "djtasks" or broker.celery_broker is not None

    def worker_argv(self, queue: str, *, concurrency: int, pool: str,
                    events: bool = False) -> list[str]:
        """Return the command line of a worker consuming ``queue``, logging at INFO.

        ``events``: both send task events (``-E``).
        """
        common = ["-Q", queue, "-c", str(concurrency), "-P", pool, "-l", "INFO",
                  "-n", f"bench-{self.key}@%h", *(["-E"] if events else [])]
        if self.key == "djtasks":
            return [sys.executable, "-m", "django", "runworker", *common]
        return [sys.executable, "-m", "celery", "-A", "bench.celeryapp", "worker", *common,
                "--without-gossip", "--without-mingle", "--without-heartbeat"]

    def env(self, broker: Broker, queue: str) -> dict[str, str]:
        """Return the environment of this system's processes (worker and clients)."""
        # Nothing of the caller's own djtasks configuration may leak into a run.
        base = {k: v for k, v in os.environ.items() if not k.startswith("DJTASKS_")}
        base.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", BENCH_QUEUE=queue,
                    DJANGO_SETTINGS_MODULE="bench.settings")
        if self.key == "djtasks":
            base.update(DJTASKS_BROKER_URL=broker.djtasks_broker,
                        DJTASKS_RESULT_BACKEND=broker.djtasks_results,
                        DJTASKS_TASK_DEFAULT_QUEUE=queue)
        else:
            base.update(BENCH_CELERY_BROKER_URL=broker.celery_broker or "",
                        BENCH_CELERY_RESULT_BACKEND=broker.celery_results or "")
        return base


SYSTEMS = {
    "djtasks": System("djtasks", "djtasks"),
    "celery": System("celery", f"Celery {version('celery')}"),
}
