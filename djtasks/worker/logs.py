"""Worker logging: Celery's line format on stderr, at the level given by -l (processes layer)."""

from __future__ import annotations

import logging
import sys
import time

from djtasks.utils.log import TASK_FORMAT, TASK_LOGGER_NAME, task_filter

WORKER_FORMAT = "[%(asctime)sZ: %(levelname)s/%(processName)s] %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class UTCFormatter(logging.Formatter):
    """Times in UTC, whatever TIME_ZONE says (Django sets the process's TZ from it): the
    lines of workers on machines in several zones then read on one clock."""

    # A builtin is not bound as a method, but mypy types the attribute as if it were.
    converter = time.gmtime  # type: ignore[assignment]


def configure_logging(level: str) -> None:
    """Send djtasks' records, and any task's records, to stderr at ``level``.

    Like Celery's worker, this takes over the root logger when nobody configured it, so
    that what tasks log shows up without any LOGGING setting.
    """
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"loglevel: expected one of {', '.join(LEVELS)}, got {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UTCFormatter(WORKER_FORMAT))
    handler.addFilter(task_filter())  # so a format naming %(task_name)s works for any record
    djtasks_logger = logging.getLogger("djtasks")
    djtasks_logger.handlers = [handler]
    djtasks_logger.setLevel(name)
    djtasks_logger.propagate = False
    # Task loggers (djtasks.utils.log.get_task_logger) say which task and id logged.
    task_handler = logging.StreamHandler(sys.stderr)
    task_handler.setFormatter(UTCFormatter(TASK_FORMAT.replace("%(asctime)s", "%(asctime)sZ")))
    task_handler.addFilter(task_filter())
    task_logger = logging.getLogger(TASK_LOGGER_NAME)
    task_logger.handlers = [task_handler]
    task_logger.setLevel(name)
    task_logger.propagate = False
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(name)
