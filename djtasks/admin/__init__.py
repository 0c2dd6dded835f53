"""The Django admin as djtasks' dashboard: one module per ModelAdmin (edge layer)."""

from djtasks.admin import (
                           clocked,
                           crontabs,
                           dashboard,
                           dead_letters,
                           intervals,
                           periodic_tasks,
                           queues,
                           results,
                           routing_rules,
                           workers,
)

__all__ = ["clocked", "crontabs", "dashboard", "dead_letters", "intervals", "periodic_tasks",
           "queues", "results", "routing_rules", "workers"]
