"""Read the enabled RoutingRule rows as values, safely inside any caller (storage layer).

The whole enabled set is read in one query each ``routing_rules_refresh`` seconds rather
than asking first whether it changed: the table holds tens of rows, so the read costs what a
version check would, and it sees every kind of change—``save()``, ``QuerySet.update()``,
``bulk_create``, deletes, and SQL from outside Django that never touches ``date_changed``.
"""

from __future__ import annotations

import contextlib

from django.db import connections, router, transaction

from djtasks.models import RoutingRule
from djtasks.utils.route_rules import RouteRule


def read_enabled_rules() -> tuple[RouteRule, ...]:
    """Return the enabled rules from the database the djtasks models are routed to.

    Inside a caller's ``atomic()`` block the read runs in a savepoint, so a failure (a
    missing table, a dropped connection) is rolled back to it and cannot abort the
    caller's transaction on PostgreSQL. Outside one it is a single autocommit SELECT.
    """
    alias = router.db_for_read(RoutingRule)
    in_transaction = connections[alias].in_atomic_block
    guard = transaction.atomic(using=alias) if in_transaction else contextlib.nullcontext()
    with guard:
        return tuple(row.as_rule() for row in RoutingRule.objects.using(alias).enabled())
