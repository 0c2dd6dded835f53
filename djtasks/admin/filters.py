"""A changelist filter over a column's values that reads its index, not the table (edge layer).

Django's ``AllValuesFieldListFilter`` lists its choices with ``SELECT DISTINCT column`` over
the ModelAdmin's whole queryset, on every page of the list: a full scan of an index (or of
the table) with a million results. The values here are few (task names, workers, queues),
so on PostgreSQL a loose index scan finds them one index probe each: the smallest value,
then the smallest greater than it, and so on, stopping after ``MAX_CHOICES``. Other
databases run the DISTINCT, also capped.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.filters import AllValuesFieldListFilter
from django.db import connections
from django.db.models import Field, Model, QuerySet

from djtasks.models.columns import column

#: At most this many values are offered; a filter with more is still usable from the URL.
MAX_CHOICES = 100

LOOSE_SCAN_SQL = """
WITH RECURSIVE walk(value) AS (
    (SELECT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 1)
    UNION ALL
    SELECT (SELECT {column} FROM {table} WHERE {column} > walk.value ORDER BY {column} LIMIT 1)
    FROM walk WHERE walk.value IS NOT NULL
)
SELECT value FROM walk WHERE value IS NOT NULL LIMIT %s
"""


def distinct_values(model: type[Model], field: Field, using: str, limit: int = MAX_CHOICES) -> list[Any]:
    """Return up to ``limit`` distinct values of ``field`` over the whole table, in order.

    The loose scan needs an index that starts with the column; without one each probe
    would scan, so every filtered column of TaskResult has one (migration 0014).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        rows = (model._default_manager.using(using).order_by(field.name)
                .values_list(field.name, flat=True).distinct())
        return list(rows[:limit])
    quote = connection.ops.quote_name
    sql = LOOSE_SCAN_SQL.format(column=quote(column(model, field.name)), table=quote(model._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [value for (value,) in cursor.fetchall()]


class IndexedValuesFilter(AllValuesFieldListFilter):
    """``AllValuesFieldListFilter`` whose choices come from ``distinct_values``.

    The choices are the table's values, not those of the ModelAdmin's queryset: the
    TaskResult list shows the whole table, and a per-request queryset could not use the
    loose scan.
    """

    def __init__(self, field: Field, request: Any, params: dict, model: type[Model],
                 model_admin: Any, field_path: str) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        queryset: QuerySet = model_admin.get_queryset(request)
        # Django types the choices as a QuerySet; it only iterates them, so a list serves.
        self.lookup_choices = distinct_values(model, field, queryset.db)  # type: ignore[assignment]
