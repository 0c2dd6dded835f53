"""The Django app of the benchmark: a no-op, a task that reads the worker's clock, a chord's two tasks."""
