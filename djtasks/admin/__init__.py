"""The Django admin as djtasks' dashboard: one module per ModelAdmin (edge layer)."""

from djtasks.admin import clocked, crontabs, intervals, periodic_tasks, results, routing_rules, workers

__all__ = ["clocked", "crontabs", "intervals", "periodic_tasks", "results", "routing_rules", "workers"]
