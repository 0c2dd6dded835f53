"""The outbox table: task messages written in the caller's transaction until sent (storage layer).

``publish.Publisher`` keeps a message here when it is published inside a transaction that
the message must follow (``delay_on_commit``, ``task_outbox``), deletes it once sent, and
relays the rows whose sender died before it could send them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections, router

if TYPE_CHECKING:
    from djtasks.models import OutboxMessage


def _table() -> type[OutboxMessage]:
    # Imported when first used: ``import djtasks`` reaches this module while Django is
    # still loading its apps, before any model may be imported.
    from djtasks.models import OutboxMessage
    return OutboxMessage


def outbox_alias() -> str:
    """The database the outbox rows are written to (the project's router decides)."""
    return router.db_for_write(_table())


def in_transaction(alias: str) -> bool:
    """Whether this thread is inside ``transaction.atomic()`` on ``alias``."""
    return connections[alias].in_atomic_block


def keep(alias: str, fields: Mapping[str, Any]) -> int:
    """Write one outbox row (in the open transaction); return its primary key."""
    return _table().objects.using(alias).create(**fields).pk


def forget(alias: str, pk: int) -> None:
    """Delete the row ``pk``: its message is sent."""
    _table().objects.using(alias).filter(pk=pk).delete()


def stranded(alias: str, written_before: datetime, limit: int) -> list[OutboxMessage]:
    """The oldest ``limit`` rows written before ``written_before``: nobody sent them."""
    return list(_table().objects.using(alias).stranded(written_before).order_by("pk")[:limit])


def any_stranded(alias: str, written_before: datetime) -> bool:
    return _table().objects.using(alias).stranded(written_before).exists()
