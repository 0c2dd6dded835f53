"""The SQL of the django:// transport, built once per database connection (storage layer).

The hot paths run as single statements on Django's own connection, so they join the
caller's transaction and show up in ``CaptureQueriesContext``; the ORM would cost more
Python time per message than the statement itself.
"""

# ruff: noqa: S608 - the SQL is assembled from quoted identifiers of the model, never from input
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from django.db.backends.base.base import BaseDatabaseWrapper

from djtasks.models.columns import column
from djtasks.models.transport import QueueMessage

# Columns a fetch returns, in this order.
# Final, so that mypy knows which item of a Row each one indexes.
ID: Final = 0
PAYLOAD: Final = 1
PRIORITY: Final = 2
DELIVERY_COUNT: Final = 3


#: One delivery of a row: its id and the delivery_count its fetch returned.
Delivery = tuple[int, int]


@dataclass(frozen=True)
class Statements:
    """SQL text for one database vendor; ``{ids}`` is filled in by ``with_ids``.

    ``{deliveries}`` (``with_deliveries``) names rows by delivery, id and delivery count:
    a consumer that settles a row it took (ack, requeue, release) touches it only while
    nobody took it since. A consumer frozen past its lease (SIGSTOP, a long GC pause)
    whose row another consumer took meanwhile must not delete or requeue that delivery.
    """

    vendor: str
    insert: str
    insert_notify: str
    fetch: str
    #: PostgreSQL only (None elsewhere): ``fetch`` that also deletes acked rows, ids first.
    fetch_acking: str | None
    fetch_delete: str
    ack: str
    requeue: str
    #: By id alone: a delivery this channel did not take (a dead child's, settled by its parent).
    ack_any: str
    requeue_any: str
    release: str
    renew: str
    size: str
    purge: str
    purge_with_ids: str

    def with_ids(self, sql: str, ids: Collection[int]) -> tuple[str, list]:
        """Return ``sql`` with its ``{ids}`` placeholder filled for ``ids``, and the params."""
        if self.vendor == "postgresql":
            return sql.format(ids="= ANY(%s)"), [list(ids)]
        return sql.format(ids=f"IN ({', '.join(['%s'] * len(ids))})"), list(ids)

    def with_deliveries(self, sql: str, deliveries: Collection[Delivery]) -> tuple[str, list]:
        """Return ``sql`` with ``{ids}`` and ``{deliveries}`` filled for these (id, count) pairs.

        The ids alone come first: SQLite finds rows by primary key for ``id IN (...)``,
        and would scan the table for a row-value ``IN (VALUES ...)``.
        """
        ids = [pk for pk, _ in deliveries]
        if self.vendor == "postgresql":
            return (sql.format(ids="= ANY(%s)",
                               deliveries="IN (SELECT * FROM unnest(%s::bigint[], %s::integer[]))"),
                    [ids, ids, [count for _, count in deliveries]])
        marks = ", ".join(["%s"] * len(ids))
        pairs = ", ".join(["(%s, %s)"] * len(deliveries))
        return (sql.format(ids=f"IN ({marks})", deliveries=f"IN (VALUES {pairs})"),
                [*ids, *(value for delivery in deliveries for value in delivery)])


def build(connection: BaseDatabaseWrapper) -> Statements:
    """Build the statements for ``connection``'s vendor (no query is run)."""
    q = connection.ops.quote_name
    table = q(QueueMessage._meta.db_table)
    columns = {f.name: q(column(QueueMessage, f.name)) for f in QueueMessage._meta.concrete_fields}
    pk, queue, payload = columns["id"], columns["queue"], columns["payload"]
    priority, visible_at = columns["priority"], columns["visible_at"]
    count, created_at = columns["delivery_count"], columns["created_at"]
    postgres = connection.vendor == "postgresql"
    # Rows named by delivery (with_deliveries): this id, still at this delivery count.
    delivered = f"{pk} {{ids}} AND ({pk}, {count}) {{deliveries}}"

    insert = (
        f"INSERT INTO {table} ({queue}, {payload}, {priority}, {visible_at}, {count}, {created_at})"
        " VALUES (%s, %s, %s, %s, 0, %s)"
    )
    # FOR UPDATE SKIP LOCKED lets concurrent consumers take disjoint batches without
    # waiting on each other; SQLite has a single writer, so it needs no lock clause.
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    pick = (
        f"SELECT {pk} FROM {table} WHERE {queue} = %s AND {visible_at} <= %s"
        f" ORDER BY {priority} DESC, {visible_at}, {pk} LIMIT %s{lock}"
    )
    returning = f"RETURNING {pk}, {payload}, {priority}, {count}"
    # A deleting fetch (no-ack consumers) returns the count this delivery makes.
    returning_deleted = f"RETURNING {pk}, {payload}, {priority}, {count} + 1"
    if postgres:
        # MATERIALIZED: the batch is picked once; a planner that re-ran the locking
        # subquery could lease more rows than the limit.
        lease = (
            f"picked AS MATERIALIZED ({pick}) UPDATE {table} SET {visible_at} = %s,"
            f" {count} = {count} + 1 WHERE {pk} IN (SELECT {pk} FROM picked) {returning}"
        )
        fetch = f"WITH {lease}"
        # The acks gathered since the last fetch ride along: no round trip of their own.
        # The rows differ (an acked row is leased, so not picked), and both commit together.
        fetch_acking = (f"WITH acked AS (DELETE FROM {table} WHERE ({pk}, {count}) IN "
                        f"(SELECT * FROM unnest(%s::bigint[], %s::integer[]))), {lease}")
        fetch_delete = (
            f"WITH picked AS MATERIALIZED ({pick}) DELETE FROM {table}"
            f" WHERE {pk} IN (SELECT {pk} FROM picked) {returning_deleted}"
        )
    else:
        fetch = (
            f"UPDATE {table} SET {visible_at} = %s, {count} = {count} + 1"
            f" WHERE {pk} IN ({pick}) {returning}"
        )
        fetch_acking = None  # SQLite has no DELETE inside WITH; the channel deletes first
        fetch_delete = f"DELETE FROM {table} WHERE {pk} IN ({pick}) {returning_deleted}"
    return Statements(
        vendor=connection.vendor,
        insert=insert,
        # One statement, one round trip: the NOTIFY is sent when the INSERT commits.
        insert_notify=f"WITH m AS ({insert} RETURNING 1) SELECT pg_notify(%s, '') FROM m",
        fetch=fetch,
        fetch_acking=fetch_acking,
        fetch_delete=fetch_delete,
        ack=f"DELETE FROM {table} WHERE {delivered}",
        # Back to where it was published: visible at once, ahead of younger messages.
        requeue=f"UPDATE {table} SET {visible_at} = {created_at} WHERE {delivered}",
        ack_any=f"DELETE FROM {table} WHERE {pk} {{ids}}",
        requeue_any=f"UPDATE {table} SET {visible_at} = {created_at} WHERE {pk} {{ids}}",
        # Taken but never handed to the application: this fetch does not count.
        release=(
            f"UPDATE {table} SET {visible_at} = {created_at}, {count} = {count} - 1"
            f" WHERE {delivered}"
        ),
        renew=f"UPDATE {table} SET {visible_at} = %s WHERE {pk} {{ids}}",
        size=f"SELECT COUNT(*) FROM {table} WHERE {queue} = %s AND {visible_at} <= %s",
        purge=f"DELETE FROM {table} WHERE {queue} = %s AND {visible_at} <= %s",
        purge_with_ids=(
            f"DELETE FROM {table} WHERE {queue} = %s AND ({visible_at} <= %s OR {pk} {{ids}})"
        ),
    )


def fetch_params(
    statements: Statements, queue: str, now: Any, lease_until: Any, limit: int
) -> Sequence[Any]:
    """Order the fetch parameters as the vendor's statement expects them."""
    if statements.vendor == "postgresql":
        return (queue, now, limit, lease_until)
    return (lease_until, queue, now, limit)


def fetch_delete_params(queue: str, now: Any, limit: int) -> Sequence[Any]:
    """Return the parameters of ``fetch_delete`` (the same on every vendor)."""
    return (queue, now, limit)
