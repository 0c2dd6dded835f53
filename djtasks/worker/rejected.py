"""A message the worker cannot run, kept as a DeadLetter for the operator (processes layer).

Whatever is wrong with it (it does not decode, its content type is not accepted, its task
is not registered, its headers break the protocol, it is too large), the message is kept
as received, with a reason for people (``reason``) and one for programs (``reason_code``),
so that it can be looked at and, once the cause is fixed (the task deployed, the content
type accepted), replayed from the admin. A message too large to decode is not kept whole:
its first ``KEPT_MESSAGE_SIZE`` characters are, as text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import kombu
from django.db import DatabaseError, router, transaction
from django.utils import timezone
from kombu.exceptions import ContentDisallowed as KombuContentDisallowed
from kombu.exceptions import DecodeError

from djtasks.exceptions import NotRegistered, ProtocolError
from djtasks.models import DeadLetter
from djtasks.models.execution import KEPT_MESSAGE_SIZE
from djtasks.worker.eta import source_queue
from djtasks.worker.received import as_received

logger = logging.getLogger("djtasks.worker")


def reason_code_of(exc: BaseException) -> str:
    """The DeadLetter ``reason_code`` of a message that raised ``exc`` on its way in."""
    if isinstance(exc, ProtocolError):
        return exc.reason_code
    if isinstance(exc, KombuContentDisallowed):
        return "content_disallowed"
    if isinstance(exc, NotRegistered):
        return "not_registered"
    if isinstance(exc, (DecodeError, UnicodeDecodeError, RecursionError)):
        return "decode_error"
    return "unexpected"


def keep_rejected(message: kombu.Message, exc: BaseException, *, task_id: str | None,
                  queues: Sequence[kombu.Queue], worker: str, keep_at_most: int | None) -> DeadLetter:
    """Keep ``message``, rejected for ``exc``, as a DeadLetter; return the row.

    Kept as received (replayable) when it has a usable id and can be stored so; as text
    otherwise: no id, too large, or headers the database cannot hold (a NUL in them).
    """
    code = reason_code_of(exc)
    reason = f"rejected: {exc}"
    headers = message.headers or {}
    name = _text(headers.get("task"))
    queue = source_queue(message.delivery_info, queues)
    rows = DeadLetter.objects.using(router.db_for_write(DeadLetter))
    if task_id and code != "too_large":
        values: dict[str, Any] = {
            **as_received(message, queue), "task_name": name[:255],
            "task_args": _text(headers.get("argsrepr")), "task_kwargs": _text(headers.get("kwargsrepr")),
            "retries": headers.get("retries") if isinstance(headers.get("retries"), int) else 0,
            "deliveries": 1, "reason": reason, "reason_code": code, "worker": worker[:255],
            "date_created": timezone.now(),
        }
        try:
            with transaction.atomic(using=rows.db):  # a savepoint: the text form may follow
                return rows.keep(task_id, values, keep_at_most)
        except DatabaseError:
            raise  # the database is away: the caller logs it, the message is rejected anyway
        except Exception as error:  # headers JSON cannot hold: keep it as text instead
            logger.warning("dead letter of %s kept as text: %s", task_id, error)
    return rows.keep_unreadable(as_text(message), reason, reason_code=code, task_id=task_id or "",
                                task_name=name, queue=queue, worker=worker,
                                keep_at_most=keep_at_most)


def as_text(message: kombu.Message) -> str:
    """What a dead letter keeps of a message it cannot keep as received."""
    return (f"headers: {message.headers!r}\nproperties: {message.properties!r}\n"
            f"content type: {message.content_type!r}\nbody: {message.body[:KEPT_MESSAGE_SIZE]!r}")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
