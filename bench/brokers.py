"""The brokers the suite runs on, and where each system stores its results there.

    BENCH_AMQP_URL            amqp://guest:guest@127.0.0.1:5672//
    BENCH_REDIS_URL           redis://127.0.0.1:6379/9   (broker of both systems)
    BENCH_CELERY_RESULTS_URL  redis://127.0.0.1:6379/10  (Celery's result backend)

djtasks has one result store, the database: PostgreSQL (alias ``default``) except on the
SQLite broker, where results go to SQLite too. Celery cannot use a Django database as
broker, so on the django:// brokers it has no row. On RabbitMQ and Redis it stores results
with its redis backend, its usual production choice, or (system ``celery-djangodb``) with
django-celery-results in PostgreSQL; its ``db+postgresql://`` backend needs SQLAlchemy,
which is not installed here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Broker:
    key: str
    title: str
    djtasks_broker: str
    djtasks_results: str
    celery_broker: str | None  # None: Celery has no transport for it
    celery_results: str | None
    services: tuple[tuple[str, int], ...]

    def down(self) -> list[str]:
        """Return ``host:port`` of every service this broker needs that does not answer."""
        return [f"{host}:{port}" for host, port in self.services if not _answers(host, port)]


POSTGRES = ("127.0.0.1", 5432)


def brokers() -> dict[str, Broker]:
    """Return the brokers by key, in the order the table shows them."""
    amqp = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
    celery_results = os.environ.get("BENCH_CELERY_RESULTS_URL", "redis://127.0.0.1:6379/10")
    found = [
        Broker("postgres", "django:// on PostgreSQL", "django://default", "django-db://default",
               None, None, (POSTGRES,)),
        Broker("sqlite", "django:// on SQLite", "django://sqlite", "django-db://sqlite",
               None, None, ()),
        Broker("rabbitmq", "RabbitMQ (amqp://)", amqp, "django-db://default",
               amqp, celery_results, (POSTGRES, ("127.0.0.1", 5672), ("127.0.0.1", 6379))),
        Broker("redis", "Redis (redis://)", redis, "django-db://default",
               redis, celery_results, (POSTGRES, ("127.0.0.1", 6379))),
    ]
    return {broker.key: broker for broker in found}


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
