"""Task loggers: records that carry the running task's name and id (pure layer).

    from djtasks.utils.log import get_task_logger
    logger = get_task_logger(__name__)

Every record made while a task runs gets ``task_name`` and ``task_id`` attributes (``"???"``
outside a task), so a format may say ``[%(task_name)s(%(task_id)s)]``. The worker sets the
current task through ``task_log_context``; this module imports nothing above it.

``loggable`` is what every string a message brings (a task id, a name, a group id) goes
through on its way into a log line: a CR, LF or ESC in it cannot forge a line or drive
the terminal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Parent of every task logger; the worker gives it a handler with TASK_FORMAT.
TASK_LOGGER_NAME = "djtasks.task"
#: Celery's worker_task_log_format.
TASK_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
UNKNOWN = "???"

#: Where ``loggable`` cuts a long string (the rest is "...").
LOGGABLE_MAXSIZE = 300


def loggable(value: object, maxsize: int = LOGGABLE_MAXSIZE) -> str:
    """Return ``value`` as text for one log line: unprintable characters escaped, bounded.

    Escaped as ``repr`` escapes them (``\\n``, ``\\x1b``), without the quotes, so that a
    plain id reads as itself.
    """
    text = str(value)
    if len(text) > maxsize:
        text = text[: maxsize - 3] + "..."
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


_current: ContextVar[tuple[str, str] | None] = ContextVar("djtasks_task_log", default=None)


@contextmanager
def task_log_context(task_name: str, task_id: str) -> Iterator[None]:
    """Make records logged inside the block carry ``task_name`` and ``task_id``."""
    token = _current.set((loggable(task_name), loggable(task_id)))
    try:
        yield
    finally:
        _current.reset(token)


class TaskFilter(logging.Filter):
    """Add ``task_name`` and ``task_id`` to each record (``???`` outside a task); drop none."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _current.get()
        name, task_id = current if current is not None else (UNKNOWN, UNKNOWN)
        if not hasattr(record, "task_name"):
            record.task_name = name
        if not hasattr(record, "task_id"):
            record.task_id = task_id
        return True


_filter = TaskFilter()


def get_task_logger(name: str) -> logging.Logger:
    """Return the logger ``name``, a child of ``djtasks.task`` whose records carry the task.

    A logger that already has a parent other than the root keeps it (as in Celery), and
    still gets the filter, so ``%(task_name)s`` works in whatever handler it reaches.
    """
    if name == TASK_LOGGER_NAME:
        raise ValueError(f"expected a module name, got {name!r}, the parent of task loggers")
    logger = logging.getLogger(name)
    if logger.parent is None or logger.parent is logging.getLogger():
        # Records still propagate to the root through djtasks.task, once configured.
        logger.parent = logging.getLogger(TASK_LOGGER_NAME)
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    return logger


def task_filter() -> TaskFilter:
    """The filter to put on a handler whose format names ``task_name`` or ``task_id``."""
    return _filter
