"""What a message brings into a log line is escaped: no forged lines, no terminal codes."""

from __future__ import annotations

import logging

from djtasks.protocol import TaskMessage
from djtasks.task import Request
from djtasks.utils.log import get_task_logger, loggable, task_log_context

FORGED = "abc\r\n[2026-01-01 00:00:00,000: INFO/MainProcess] Task x succeeded\x1b[2J"


def test_loggable_escapes_control_characters_as_repr_does():
    assert loggable(FORGED) == ("abc\\r\\n[2026-01-01 00:00:00,000: INFO/MainProcess] "
                                "Task x succeeded\\x1b[2J")
    assert loggable("tab\there\u2028nul\x00") == "tab\\there\\u2028nul\\x00"


def test_loggable_leaves_a_plain_id_as_it_is():
    plain = "0b4c5e0e-8a4b-4f57-9a7c-1d8c1e6f1a2b"
    assert loggable(plain) == plain
    assert loggable("tâche-é") == "tâche-é", "printable non-ASCII stays readable"


def test_loggable_bounds_what_it_returns():
    assert loggable("x" * 1000) == "x" * 297 + "..."
    assert loggable("x" * 1000, 10) == "x" * 7 + "..."


def test_a_job_label_escapes_its_task_name_and_id():
    job = Request(TaskMessage(id=FORGED, task="t\nx"), hostname="h")
    assert job.label.isprintable()
    assert job.label == f"t\\nx[{loggable(FORGED)}]"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_task_log_line_escapes_the_running_id():
    logger, handler = get_task_logger("tests.unit.escaping"), Records()
    logger.addHandler(handler)
    try:
        with task_log_context("t\x1b", "a\nb"):
            logger.warning("hello")
    finally:
        logger.removeHandler(handler)
    assert (handler.records[-1].task_name, handler.records[-1].task_id) == ("t\\x1b", "a\\nb")
