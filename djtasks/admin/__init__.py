"""The Django admin as djtasks' dashboard: one module per ModelAdmin (edge layer)."""

from djtasks.admin import clocked, crontabs, intervals, periodic_tasks, results, workers

__all__ = ["clocked", "crontabs", "intervals", "periodic_tasks", "results", "workers"]
