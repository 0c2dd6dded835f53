"""Delete results past ``result_expires`` from a Django database, in batches (storage layer).

Each statement deletes at most ``batch_size`` rows picked by primary key, so that a table
of millions is pruned without one long lock or transaction, and writers go on meanwhile.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q

from djtasks.models import ChordCounter, ChordPart, GroupResult, RevokedTask, TaskResult

#: Rows one statement deletes at most.
BATCH_SIZE = 1000


def delete_expired(alias: str, before: datetime, now: datetime,
                   batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Delete what expired on ``alias``; return rows deleted per model name.

    - results done before ``before``, and unfinished ones created before it (their task
      was lost: a result that is stored again later is simply created again);
    - groups created before ``before``;
    - chord counters created before ``before`` that completed or failed (a chord still
      counting keeps its counter whatever its age, or its body would never run), with
      their parts;
    - revocations past their own expiry, or revoked before ``before``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    results = TaskResult.objects.using(alias).filter(
        Q(date_done__lt=before) | Q(date_done__isnull=True, date_created__lt=before))
    groups = GroupResult.objects.using(alias).filter(date_created__lt=before)
    revoked = RevokedTask.objects.using(alias).filter(Q(expires__lt=now) | Q(date_revoked__lt=before))
    return {
        "TaskResult": delete_in_batches(results, batch_size),
        "GroupResult": delete_in_batches(groups, batch_size),
        "ChordCounter": delete_finished_chords(alias, before, batch_size),
        "RevokedTask": delete_in_batches(revoked, batch_size),
    }


def delete_in_batches(rows: models.QuerySet, batch_size: int) -> int:
    """Delete ``rows`` at most ``batch_size`` at a time; return how many were deleted."""
    deleted = 0
    while True:
        ids = list(rows.order_by().values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        # Filtering by primary key keeps each DELETE one short statement on every vendor.
        count, _ = rows.model.objects.using(rows.db).filter(pk__in=ids).delete()
        deleted += count


def delete_finished_chords(alias: str, before: datetime, batch_size: int) -> int:
    """Delete old chord counters that completed or failed, and their parts; return how many."""
    finished = ChordCounter.objects.using(alias).filter(
        Q(remaining__lte=0) | Q(failed=True), date_created__lt=before)
    deleted = 0
    while True:
        picked = list(finished.order_by().values_list("pk", "group_id")[:batch_size])
        if not picked:
            return deleted
        group_ids = [group_id for _pk, group_id in picked]
        delete_in_batches(ChordPart.objects.using(alias).filter(group_id__in=group_ids), batch_size)
        count, _ = ChordCounter.objects.using(alias).filter(pk__in=[pk for pk, _g in picked]).delete()
        deleted += count
