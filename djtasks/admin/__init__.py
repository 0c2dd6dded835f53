"""The Django admin as djtasks' dashboard: one module per ModelAdmin (edge layer)."""

from djtasks.admin import (
                           clocked,
                           crontabs,
                           dashboard,
                           dead_letters,
                           intervals,
                           outbox,
                           parked,
                           periodic_tasks,
                           queues,
                           results,
                           routing_rules,
                           waiting,
                           workers,
)

__all__ = ["clocked", "crontabs", "dashboard", "dead_letters", "intervals", "outbox", "parked",
           "periodic_tasks", "queues", "results", "routing_rules", "waiting", "workers"]
