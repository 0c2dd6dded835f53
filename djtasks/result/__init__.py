"""Results of published tasks: AsyncResult, GroupResult and their dependency graph (client layer)."""

from djtasks.result.async_result import AsyncResult, EagerResult
from djtasks.result.graph import DependencyGraph
from djtasks.result.group import GroupResult

__all__ = ["AsyncResult", "DependencyGraph", "EagerResult", "GroupResult"]
