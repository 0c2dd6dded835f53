"""The ORM models of djtasks (storage layer)."""

from djtasks.models.canvas import ChordCounter, ChordPart, GroupResult, RevokedTask
from djtasks.models.console import Dashboard, Queue
from djtasks.models.execution import DeadLetter, ParkedMessage, TaskDelivery
from djtasks.models.outbox import OutboxMessage
from djtasks.models.results import TaskResult
from djtasks.models.routing import RoutingRule
from djtasks.models.schedules import (
    BeatLease,
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
)
from djtasks.models.transport import QueueBinding, QueueMessage
from djtasks.models.workers import Worker

__all__ = [
    "BeatLease",
    "ChordCounter",
    "ChordPart",
    "ClockedSchedule",
    "CrontabSchedule",
    "Dashboard",
    "DeadLetter",
    "GroupResult",
    "IntervalSchedule",
    "OutboxMessage",
    "ParkedMessage",
    "PeriodicTask",
    "Queue",
    "QueueBinding",
    "QueueMessage",
    "RevokedTask",
    "RoutingRule",
    "TaskDelivery",
    "TaskResult",
    "Worker",
]
