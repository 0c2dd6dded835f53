"""Tasks: their definition and options, and one execution of them (client layer).

``base`` holds Task and ``@task``'s option checks; ``request`` the Request, one execution
(``self.request`` in a task body); ``trace`` the one place a body runs, for workers and
eager runs; ``handlers`` the task's handlers and signals that the trace calls.
"""

from djtasks.task.base import (
    CALL_OPTIONS,
    DEFINITION_OPTIONS,
    FEATURE_OPTIONS,
    HIDDEN_ARGUMENTS,
    TASK_OPTIONS,
    Task,
    argument_reprs,
    build_task,
    call_lineage,
    check_call_options,
    check_options,
    check_priority,
    is_sensitive,
    retry_call_options,
    task_name,
)
from djtasks.task.handlers import ExceptionInfo
from djtasks.task.request import Request, current_request, detached_request, entered
from djtasks.task.trace import NOTHING, Ending, Recorder, trace

__all__ = [
    "CALL_OPTIONS", "DEFINITION_OPTIONS", "FEATURE_OPTIONS", "HIDDEN_ARGUMENTS", "NOTHING",
    "TASK_OPTIONS", "Ending", "ExceptionInfo", "Recorder", "Request", "Task", "argument_reprs",
    "build_task", "call_lineage", "check_call_options", "check_options", "check_priority",
    "current_request", "detached_request", "entered", "is_sensitive", "retry_call_options",
    "task_name", "trace",
]
