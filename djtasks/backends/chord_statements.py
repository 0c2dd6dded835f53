"""The SQL that counts a chord's header task, written by hand for its round trips (storage layer).

The ORM would count a part in four statements inside a transaction (insert the part,
update the counter, read it back, commit); the statements here do it in one or two.
"""

# ruff: noqa: S608 - the SQL is assembled from quoted names of the models, never from input
from __future__ import annotations

from functools import cache

from django.db import connections

from djtasks.models import ChordCounter, ChordPart
from djtasks.models.columns import column


@cache
def count_unless_last(alias: str) -> str:
    """PostgreSQL: count a part that is neither the last nor counted before; one statement.

    Parameters: group id, group id, task id, task id. It inserts the part (one row
    affected) only if it decremented the counter; it does nothing for the last part,
    which must be counted in the transaction that publishes the body. A duplicate that
    races its twin fails on the part's unique constraint, and the failed statement
    takes its decrement back with it.
    """
    q = connections[alias].ops.quote_name
    counter, part = q(ChordCounter._meta.db_table), q(ChordPart._meta.db_table)
    group, remaining = q(column(ChordCounter, "group_id")), q(column(ChordCounter, "remaining"))
    part_group, part_task = q(column(ChordPart, "group_id")), q(column(ChordPart, "task_id"))
    return (
        f"WITH counted AS (UPDATE {counter} SET {remaining} = {remaining} - 1"
        f" WHERE {group} = %s AND {remaining} > 1 AND NOT EXISTS"
        f" (SELECT 1 FROM {part} WHERE {part_group} = %s AND {part_task} = %s)"
        f" RETURNING {group})"
        f" INSERT INTO {part} ({part_group}, {part_task}) SELECT {group}, %s FROM counted"
    )


@cache
def decrement(alias: str) -> str:
    """Decrement the counter of a group; RETURNING what is left and whether it failed."""
    q = connections[alias].ops.quote_name
    table = q(ChordCounter._meta.db_table)
    group, remaining = q(column(ChordCounter, "group_id")), q(column(ChordCounter, "remaining"))
    failed = q(column(ChordCounter, "failed"))
    return (f"UPDATE {table} SET {remaining} = {remaining} - 1 WHERE {group} = %s"
            f" RETURNING {remaining}, {failed}")
