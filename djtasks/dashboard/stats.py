"""The dashboard's queries over TaskResult: throughput buckets, top failures, runtimes (edge layer).

Every query is bounded by ``date_done`` over the last hour or day, so it reads a range of
the (status, date_done) or (task_name, date_done) index, never the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import Count, Q
from django.db.models.functions import TruncHour, TruncMinute

from djtasks import states
from djtasks.models import TaskResult

#: Runtimes read per task name for percentiles on a database without percentile_cont.
FALLBACK_SAMPLE = 2000
#: "Retried": a row whose state is RETRY, or a finished row that needed retries.
RETRIED = Q(status=states.RETRY) | Q(retries__gt=0)


@dataclass
class Bucket:
    start: datetime
    succeeded: int = 0
    failed: int = 0
    retried: int = 0


def throughput(using: str, now: datetime, span: timedelta, step: timedelta) -> list[Bucket]:
    """Succeeded / failed / retried per ``step`` (a minute or an hour) over ``span`` before ``now``."""
    trunc = TruncMinute if step == timedelta(minutes=1) else TruncHour
    first = trunc_python(now - span + step, step)
    rows = (TaskResult.objects.using(using).filter(date_done__gte=first, date_done__lte=now)
            .annotate(bucket=trunc("date_done")).values("bucket")
            .annotate(succeeded=Count("id", filter=Q(status=states.SUCCESS)),
                      failed=Count("id", filter=Q(status=states.FAILURE)),
                      retried=Count("id", filter=RETRIED)))
    found = {trunc_python(row["bucket"], step): row for row in rows}
    buckets = []
    for index in range(int(span / step)):
        start = first + index * step
        row = found.get(start, {})
        buckets.append(Bucket(start, row.get("succeeded", 0), row.get("failed", 0), row.get("retried", 0)))
    return buckets


def trunc_python(moment: datetime, step: timedelta) -> datetime:
    moment = moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0) if step == timedelta(hours=1) else moment


def failing_most(using: str, since: datetime, limit: int = 10) -> list[dict]:
    """The task names with the most failures since ``since``."""
    return list(TaskResult.objects.using(using).filter(status=states.FAILURE, date_done__gte=since)
                .values("task_name").annotate(failures=Count("id")).order_by("-failures")[:limit])


def recent_failures(using: str, limit: int = 10) -> list[TaskResult]:
    return list(TaskResult.objects.using(using).filter(status=states.FAILURE)
                .exclude(date_done=None).order_by("-date_done")
                .only("task_id", "task_name", "result", "date_done", "worker")[:limit])


def slowest(using: str, since: datetime, limit: int = 10) -> list[dict]:
    """p50 / p95 runtime per task name since ``since``, slowest p95 first."""
    if connections[using].vendor == "postgresql":
        return percentiles_postgres(using, since, limit)
    return percentiles_sampled(using, since, limit)


def percentiles_postgres(using: str, since: datetime, limit: int) -> list[dict]:
    table = TaskResult._meta.db_table
    sql = (f"SELECT task_name, count(*), "  # noqa: S608 - the table name is ours, values are bound
           f"percentile_cont(0.5) WITHIN GROUP (ORDER BY runtime), "
           f"percentile_cont(0.95) WITHIN GROUP (ORDER BY runtime) "
           f"FROM {table} WHERE status = %s AND date_done >= %s AND runtime IS NOT NULL "
           f"GROUP BY task_name ORDER BY 4 DESC LIMIT %s")
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [states.SUCCESS, since, limit])
        return [{"task_name": name, "count": count, "p50": p50, "p95": p95}
                for name, count, p50, p95 in cursor.fetchall()]


def percentiles_sampled(using: str, since: datetime, limit: int) -> list[dict]:
    """SQLite: the newest ``FALLBACK_SAMPLE`` runtimes of each task name, sorted in Python."""
    done = TaskResult.objects.using(using).filter(status=states.SUCCESS, date_done__gte=since,
                                                 runtime__isnull=False)
    names = done.order_by("task_name").values_list("task_name", flat=True).distinct()[:100]
    found = []
    for name in names:
        runtimes = sorted(done.filter(task_name=name).order_by("-date_done")
                          .values_list("runtime", flat=True)[:FALLBACK_SAMPLE])
        found.append({"task_name": name, "count": len(runtimes),
                      "p50": percentile(runtimes, 0.5), "p95": percentile(runtimes, 0.95)})
    return sorted(found, key=lambda row: -row["p95"])[:limit]


def percentile(ordered: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, as percentile_cont does."""
    if not ordered:
        return 0.0
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


__all__ = ["Bucket", "failing_most", "recent_failures", "slowest", "throughput"]
