"""A pool process forked while another thread writes to SQLite can still write to it.

SQLite keeps a process's locks in memory its connections share, and fork() copies it: a
child forked in the middle of another thread's write transaction inherits a lock nobody
will release, and every write it tries fails with "database is locked".
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from djtasks.backends.fork_safety import DATABASE_WRITES, ForkGate
from djtasks.worker.pools import PreforkPool

WAIT = 10.0
#: The tests' default database is SQLite (tests/settings.py); the gate asks the alias.
SQLITE_ALIAS = "default"


def write_row(path: str) -> str:
    """In the pool process: write a row with a short busy timeout; say how it went."""
    conn = sqlite3.connect(path, timeout=2, isolation_level=None)
    try:
        conn.execute("INSERT INTO t VALUES ('from the child')")
        return "written"
    except sqlite3.OperationalError as exc:
        return f"failed: {exc}"
    finally:
        conn.close()


def sqlite_file(tmp_path: Path) -> str:
    path = str(tmp_path / "fork.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.close()
    return path


def test_a_process_forked_while_a_thread_writes_can_write_sqlite(tmp_path):
    path = sqlite_file(tmp_path)
    in_transaction = threading.Event()

    def heartbeat_like_writer() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        with DATABASE_WRITES.writing(SQLITE_ALIAS):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES ('from a thread')")
            in_transaction.set()
            # Commit once the pool asks to fork (without the gate it forks at once, and this
            # commits when the test gave up on it).
            deadline = time.monotonic() + WAIT
            while not DATABASE_WRITES.fork_pending and time.monotonic() < deadline:
                time.sleep(0.01)
            conn.execute("COMMIT")
            conn.close()  # a close writes too: SQLite checkpoints the last connection's WAL

    writer = threading.Thread(target=heartbeat_like_writer)
    writer.start()
    assert in_transaction.wait(WAIT)
    pool = PreforkPool(1, write_row)
    try:
        pool.start()  # forks: waits for the thread's transaction to end
        writer.join(WAIT)
        done = threading.Event()
        outcomes = []
        pool.submit(path, lambda job, outcome: (outcomes.append(outcome), done.set()))
        assert done.wait(WAIT)
    finally:
        pool.stop()
    assert outcomes[0].value == "written"


def test_writers_run_together_and_a_fork_waits_for_them():
    gate = ForkGate()
    order: list[str] = []
    with gate.writing(SQLITE_ALIAS), gate.writing(SQLITE_ALIAS):  # two threads' writes at once never wait
        forker = threading.Thread(target=lambda: _fork_under(gate, order))
        forker.start()
        while not gate.fork_pending:
            time.sleep(0.001)
        order.append("writes done")
    forker.join(WAIT)
    assert order == ["writes done", "forked"]
    with gate.writing(SQLITE_ALIAS):  # and writing goes on after the fork
        pass


def test_a_write_that_never_ends_delays_a_fork_only_so_long(caplog):
    gate = ForkGate()
    with gate.writing(SQLITE_ALIAS), gate.forking(timeout=0.05):
        pass
    assert "still write to the database" in caplog.text


def _fork_under(gate: ForkGate, order: list[str]) -> None:
    with gate.forking():
        order.append("forked")


def test_writes_elsewhere_than_sqlite_never_delay_a_fork(caplog):
    # A PostgreSQL lock lives in the server, and no alias at all is a broker's I/O.
    gate = ForkGate()
    with gate.writing("postgres"), gate.writing(None), gate.forking(timeout=0.05):
        pass
    assert "still write to the database" not in caplog.text
