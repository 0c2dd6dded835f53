"""Counting a changelist without scanning its table: the planner's estimate above a size (edge layer).

``COUNT(*)`` on PostgreSQL reads every matching row (there is no stored row count), so on a
million results each page of the list would scan the table. The planner already keeps an
estimate of how many rows a query returns; above ``ESTIMATE_ABOVE`` rows the list shows
that estimate as "about N". Below it, and on databases without an estimate (SQLite), the
count is exact. An exact count is also capped: if the estimate was far too low, counting
stops at ``EXACT_UP_TO`` rows instead of running through the table.
"""

from __future__ import annotations

import json

from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

#: Above this many rows (by the planner's estimate) the list shows the estimate.
ESTIMATE_ABOVE = 10_000
#: An exact count reads at most this many rows; more than that is shown as an estimate.
EXACT_UP_TO = 100_000


def planner_estimate(queryset: QuerySet) -> int | None:
    """Return PostgreSQL's estimate of the rows ``queryset`` returns, or None elsewhere.

    EXPLAIN plans the query without running it. For a query without a filter this is the
    table's statistics scaled to its current size (``pg_class.reltuples`` per page), for a
    filtered one the planner's selectivity from the column statistics: both cost no scan.
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    # The columns and the order don't change the row estimate; dropping them keeps the plan small.
    try:
        sql, params = queryset.order_by().values("pk").query.get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:  # a filter that matches nothing by construction, e.g. pk__in=[]
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):  # psycopg hands back text when the json type isn't registered
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """A Paginator whose ``count`` is the planner's estimate for big results, exact for small ones.

    ``estimated`` says which one ``count`` is, so the page can say "about".
    """

    estimate_above = ESTIMATE_ABOVE
    exact_up_to = EXACT_UP_TO

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        estimate = planner_estimate(queryset)
        if estimate is None:
            return super().count
        if estimate > self.estimate_above:
            self.estimated = True
            return estimate
        # Slicing makes it SELECT COUNT(*) FROM (... LIMIT n): at most n rows are read.
        exact = queryset[: self.exact_up_to].count()
        if exact < self.exact_up_to:
            return exact
        self.estimated = True
        return max(estimate, exact)
