"""The worker's features, each a hook object in a module of its own (processes layer).

``FEATURES`` lists them in the order the consumer runs their "before" hooks (their "after"
hooks run in reverse); ``OPTIONS`` is the union of the task options they own.
"""

from __future__ import annotations

from djtasks.worker.features.acks import Acks
from djtasks.worker.features.base import Feature, Features, task_options
from djtasks.worker.features.deliveries import Deliveries
from djtasks.worker.features.eta import Eta
from djtasks.worker.features.events import Events
from djtasks.worker.features.rate_limits import RateLimits
from djtasks.worker.features.request_class import RequestClass
from djtasks.worker.features.results import Results
from djtasks.worker.features.retries import Retries
from djtasks.worker.features.revoke import Revoke
from djtasks.worker.features.stats import Stats
from djtasks.worker.features.time_limits import TimeLimits

#: Before hooks in this order: a message is announced, then may be revoked or due later,
#: rate-limited, dead-lettered, acknowledged early. After hooks in reverse: the results
#: feature records and logs an end before the task's Request class hears of it.
FEATURES: tuple[type[Feature], ...] = (Events, Stats, Revoke, Eta, RateLimits, Deliveries, Acks,
                                       TimeLimits, RequestClass, Results, Retries)

OPTIONS = task_options(FEATURES)

__all__ = ["FEATURES", "OPTIONS", "Acks", "Deliveries", "Eta", "Events", "Feature", "Features",
           "RateLimits", "RequestClass", "Results", "Retries", "Revoke", "Stats", "TimeLimits"]
