"""CanvasStore: groups, chord counters and revoked ids in a Django database (storage layer).

The database half of a ResultBackend that DatabaseBackend builds on. A chord is joined by
counting: each header task that finishes inserts its ChordPart (a duplicate delivery
inserts nothing and counts nothing) and decrements the counter, both or neither.

On PostgreSQL a part that is not the last is counted in one autocommit statement: one
round trip. The last part, a failed one, and every part on SQLite are counted in a
transaction that stays open while the caller publishes (or fails) the body, so that a
crash before the publish takes the count back and the redelivered message joins again.
The part is inserted first because on SQLite the first statement of a transaction must be
a write: two workers then queue on the write lock instead of one failing to upgrade its read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from djtasks.backends import chord_statements
from djtasks.backends.base import ChordJoin, ResultBackend
from djtasks.backends.compiled import CompiledRead
from djtasks.backends.in_lists import in_batches
from djtasks.models import ChordCounter, ChordPart, GroupResult, RevokedTask, TaskResult
from djtasks.models.columns import column

#: The NOTIFY channel of revocations on PostgreSQL (DatabaseBackend.revocations_changed).
REVOKED_CHANNEL = "djtasks_revoked"
# A worker looks for new revocations each time messages arrived, up to 20 times a second.
_REVOKED = CompiledRead(lambda now: RevokedTask.objects.active(now).values_list("task_id", "date_revoked"),
                        arguments=(datetime,))
_REVOKED_SINCE = CompiledRead(
    lambda now, since: RevokedTask.objects.active(now).filter(date_revoked__gt=since)
    .values_list("task_id", "date_revoked"),
    arguments=(datetime, datetime))

logger = logging.getLogger(__name__)


class CanvasStore(ResultBackend):
    """The group, chord and revoke methods of a backend whose rows live on ``self.alias``."""

    alias: str

    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        GroupResult.objects.using(self.alias).bulk_create(
            [GroupResult(group_id=group_id, result=list(task_ids))],
            update_conflicts=True, unique_fields=["group_id"], update_fields=["result"],
        )

    def restore_group(self, group_id: str) -> list[str] | None:
        return (GroupResult.objects.using(self.alias).filter(group_id=group_id)
                .values_list("result", flat=True).first())

    def forget_group(self, group_id: str) -> None:
        """Delete the group and its chord counter, if any; its members' results stay."""
        for model in (GroupResult, ChordCounter, ChordPart):
            model.objects.using(self.alias).filter(group_id=group_id).delete()

    def start_chord(self, group_id: str, member_ids: Sequence[str], body: Mapping[str, Any]) -> None:
        """Store the counter and the group; starting the same chord again keeps the first counter."""
        ids = list(member_ids)
        if not ids:
            raise ValueError(f"chord {group_id}: expected at least one header task id, got none")
        counter = ChordCounter(group_id=group_id, total=len(ids), remaining=len(ids), body=dict(body),
                               member_ids=ids)
        with transaction.atomic(using=self.alias):
            ChordCounter.objects.using(self.alias).bulk_create([counter], ignore_conflicts=True)
            self.save_group(group_id, ids)

    @contextlib.contextmanager
    def chord_part_done(self, group_id: str, task_id: str, *, failed: bool) -> Iterator[ChordJoin | None]:
        if not failed and self._counted_unless_last(group_id, task_id):
            yield None  # neither the last part nor a failure: nothing for the caller to do
            return
        with transaction.atomic(using=self.alias):
            yield self._count_part(group_id, task_id, failed=failed)

    def _counted_unless_last(self, group_id: str, task_id: str) -> bool:
        """Count a part in one autocommit statement, if it is not the last; True if counted.

        PostgreSQL only, and only outside a transaction (a failed statement would break
        the caller's). False sends the part to the transaction: the last part, a
        duplicate, a part of an unknown chord.
        """
        connection = connections[self.alias]
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return False
        try:
            with connection.cursor() as cursor:
                cursor.execute(chord_statements.count_unless_last(self.alias),
                               [group_id, group_id, task_id, task_id])
                return cursor.rowcount == 1
        except IntegrityError:  # its duplicate was counted at the same moment
            return False

    def _count_part(self, group_id: str, task_id: str, *, failed: bool) -> ChordJoin | None:
        # Runs inside the transaction; after the UPDATE this transaction holds the counter
        # (PostgreSQL: its row lock; SQLite: the write lock) until it commits or rolls back.
        if not self._insert_part(group_id, task_id):
            logger.debug("chord %s: task %s was counted before", group_id, task_id)
            return None
        with connections[self.alias].cursor() as cursor:
            cursor.execute(chord_statements.decrement(self.alias), [group_id])
            counted = cursor.fetchone()
        if counted is None:
            logger.debug("chord %s: no counter stored, task %s not counted", group_id, task_id)
            ChordPart.objects.using(self.alias).filter(group_id=group_id, task_id=task_id).delete()
            return None
        remaining, already_failed = counted[0], bool(counted[1])
        counter = ChordCounter.objects.using(self.alias).filter(group_id=group_id)
        if remaining == 0:
            # Done counting: a part delivered again from now on drives remaining below 0.
            ChordPart.objects.using(self.alias).filter(group_id=group_id).delete()
        if failed:
            # Below 0 only a duplicate of a chord that completed: it must not fail it now.
            won = not already_failed and counter.filter(failed=False, remaining__gte=0).update(failed=True)
            return self._join(group_id, failed_task_id=task_id) if won else None
        return self._join(group_id) if remaining == 0 and not already_failed else None

    def _insert_part(self, group_id: str, task_id: str) -> bool:
        """INSERT the part unless it is there already; True when this call inserted it."""
        connection = connections[self.alias]
        ops, meta = connection.ops, ChordPart._meta
        columns = ", ".join(ops.quote_name(column(ChordPart, name)) for name in ("group_id", "task_id"))
        # Only quoted names from the model's metadata are formatted in; the ids are parameters.
        sql = (f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} {ops.quote_name(meta.db_table)} "
               f"({columns}) VALUES (%s, %s) {ops.on_conflict_suffix_sql([], OnConflict.IGNORE, [], [])}")
        with connection.cursor() as cursor:
            cursor.execute(sql, [group_id, task_id])
            return cursor.rowcount == 1

    def _join(self, group_id: str, *, failed_task_id: str | None = None) -> ChordJoin:
        body, member_ids = (ChordCounter.objects.using(self.alias).filter(group_id=group_id)
                            .values_list("body", "member_ids").get())
        results = TaskResult.objects.using(self.alias)
        if failed_task_id is not None:
            error = results.filter(task_id=failed_task_id).values_list("result", flat=True).first()
            return ChordJoin(group_id, body, tuple(member_ids), failed_task_id=failed_task_id, error=error)
        values = {task_id: value for batch in in_batches(member_ids)
                  for task_id, value in results.filter(task_id__in=batch).values_list("task_id", "result")}
        return ChordJoin(group_id, body, tuple(member_ids), results=[values.get(i) for i in member_ids])

    def revoke(self, task_ids: Sequence[str], expires: datetime | None) -> None:
        now = timezone.now()
        # dict.fromkeys: an id twice in one upsert is an error on PostgreSQL.
        rows = [RevokedTask(task_id=task_id, date_revoked=now, expires=expires)
                for task_id in dict.fromkeys(task_ids)]
        connection = connections[self.alias]
        if connection.vendor != "postgresql":
            self._upsert_revoked(rows)
            return
        with transaction.atomic(using=self.alias):  # the NOTIFY goes out at the commit
            self._upsert_revoked(rows)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, '')", [REVOKED_CHANNEL])

    def _upsert_revoked(self, rows: list[RevokedTask]) -> None:
        RevokedTask.objects.using(self.alias).bulk_create(
            rows, update_conflicts=True, unique_fields=["task_id"],
            update_fields=["date_revoked", "expires"])

    def revoked(self, task_ids: Sequence[str]) -> set[str]:
        if not task_ids:
            return set()
        active = RevokedTask.objects.using(self.alias).active(timezone.now())
        return {task_id for batch in in_batches(task_ids)
                for task_id in active.filter(task_id__in=batch).values_list("task_id", flat=True)}

    def revoked_since(self, since: datetime | None) -> tuple[set[str], datetime | None]:
        now = timezone.now()
        found = (_REVOKED.rows(self.alias, now) if since is None
                 else _REVOKED_SINCE.rows(self.alias, now, since))
        return {task_id for task_id, _ in found}, max((date for _, date in found), default=since)
