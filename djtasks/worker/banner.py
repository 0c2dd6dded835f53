"""The start-up banner of runworker, in Celery's shape (processes layer)."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import djtasks
from djtasks.conf import censor_url

if TYPE_CHECKING:
    from djtasks.worker.worker import Worker


def banner(worker: Worker) -> str:
    """Return the banner text: configuration, queues and registered tasks."""
    app = worker.app
    settings = app.settings
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S %Z")
    queues = "\n".join(
        f".> {q.name:<12} exchange={q.exchange.name}({q.exchange.type}) key={q.routing_key}"
        for q in (app.router.queue(name) for name in worker.queues)
    )
    tasks = "\n".join(f"  . {name}" for name in app.tasks.user_tasks()) or "  (none)"
    return f"""
 -------------- {worker.hostname} v{djtasks.__version__}
--- ***** ----- {platform.platform(terse=True)} {now}
- *** --- * ---
- ** ---------- [config]
- ** ---------- .> app:         {app.main or 'djtasks (default)'}
- ** ---------- .> transport:   {censor_url(settings.broker_url)}
- ** ---------- .> results:     {censor_url(settings.result_backend)}
- *** --- * --- .> concurrency: {worker.concurrency} ({worker.pool_name})
-- ******* ----
--- ***** ----- [queues]
 -------------- {queues}

[tasks]
{tasks}

"""
