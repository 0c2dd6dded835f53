"""The retries feature: the task options of ``self.retry()`` and automatic retries (processes layer).

Retries happen where the task runs: ``Task.retry()`` sends the message again and raises
Retry, which the trace turns into RETRY (``task/trace.py``; the worker stores it). In the
main process a retried request is one that ended: this feature has no hook, it owns the
options.
"""

from __future__ import annotations

from djtasks.worker.features.base import Feature


class Retries(Feature):
    """Own the retry options; ``Task.retry`` and the trace act on them."""

    options = frozenset({"max_retries", "default_retry_delay", "autoretry_for",
                         "dont_autoretry_for", "retry_kwargs", "retry_backoff",
                         "retry_backoff_max", "retry_jitter"})
