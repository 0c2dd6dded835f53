"""SQLite for several processes: what djtasks sets on the files it uses (storage layer).

A new project has Django's plain SQLite settings: a rollback journal, in which a writer
locks out every reader, a five-second busy timeout, and deferred transactions, which fail
at once with "database is locked" when two of them try to upgrade to writers. A worker, a
beat and a web process on one file then trip over each other. So the processes djtasks
runs (``runworker``, ``runbeat``) prepare the SQLite databases they use before their
first query, without the user editing ``DATABASES``:

- WAL journal mode, which lets readers and one writer work at once. It is a property of
  the file, so setting it once helps every process, the web process too; a file that
  cannot take it (in memory, a read-only directory) keeps its mode.
- A busy timeout of ``BUSY_TIMEOUT`` seconds, unless the settings give one.
- Immediate transactions (``transaction_mode = "IMMEDIATE"``), unless the settings choose:
  a transaction that will write takes the lock when it begins, so it waits its turn
  instead of failing half-way.

What remains is waited out by the loops (``backends.outages``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import DatabaseError, connections

logger = logging.getLogger("djtasks.database")

#: Seconds an SQLite connection of a djtasks process waits for a lock.
BUSY_TIMEOUT = 20


def prepare_sqlite(aliases: Iterable[str]) -> list[str]:
    """Prepare each SQLite database of ``aliases`` for several processes; return those changed."""
    prepared = []
    for alias in sorted(set(aliases)):
        connection = connections[alias]
        if connection.vendor != "sqlite":
            continue
        options = connection.settings_dict.setdefault("OPTIONS", {})
        options.setdefault("timeout", BUSY_TIMEOUT)
        options.setdefault("transaction_mode", "IMMEDIATE")
        # The options are read when a connection opens: one opened earlier opens again.
        if not connection.in_atomic_block:
            connection.close()
        use_wal(alias)
        prepared.append(alias)
    return prepared


def use_wal(alias: str) -> bool:
    """Switch the file of ``alias`` to WAL journal mode; return whether it is in WAL now."""
    connection = connections[alias]
    if is_in_memory(connection.settings_dict["NAME"]):
        return False
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0].lower() == "wal":
                return True
            cursor.execute("PRAGMA journal_mode=WAL")
            mode = cursor.fetchone()[0].lower()
    except DatabaseError as exc:  # locked by another process that is switching it: it will
        logger.warning("database %r: could not switch SQLite to WAL journal mode (%s)", alias, exc)
        return False
    if mode != "wal":
        logger.warning("database %r: SQLite kept journal mode %r; WAL is advised for several "
                       "processes", alias, mode)
    return mode == "wal"


def is_in_memory(name: object) -> bool:
    text = str(name)
    return text in ("", ":memory:") or "mode=memory" in text
