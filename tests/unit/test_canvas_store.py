"""Groups, chord counters and revoked ids of the database backend, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import sqlite3
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from djtasks import states
from djtasks.backends.base import ChordJoin, ExecutionInfo, ResultBackend, ResultMeta, exception_to_dict
from djtasks.backends.database import DatabaseBackend
from djtasks.models import ChordCounter, ChordPart, TaskResult

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "postgres"])

BODY = {"task": "tests.collect", "args": [], "kwargs": {}, "options": {}, "subtask_type": None}


@pytest.fixture(params=["default", "postgres"], ids=["sqlite", "postgres"])
def backend(request):
    made = DatabaseBackend(request.param)
    yield made
    made.close()


def store_results(backend, values):
    """Store a SUCCESS row per ``{task_id: value}`` in one query."""
    TaskResult.objects.using(backend.alias).bulk_create(
        [TaskResult(task_id=task_id, status=states.SUCCESS, result=value)
         for task_id, value in values.items()]
    )


def part_done(backend, group_id, task_id, *, failed=False):
    with backend.chord_part_done(group_id, task_id, failed=failed) as join:
        return join


class CrashError(Exception):
    """Raised inside the with-block, as by a worker that dies before it publishes the body."""

    def __init__(self, join):
        super().__init__("crashed inside the block")
        self.join = join


def part_done_then_crash(backend, group_id, task_id):
    with backend.chord_part_done(group_id, task_id, failed=False) as join:
        raise CrashError(join)


# -- groups -----------------------------------------------------------------------------------


def test_a_group_is_saved_restored_and_forgotten(backend):
    assert backend.restore_group("g-1") is None
    backend.save_group("g-1", ["b", "a", "c"])
    assert backend.restore_group("g-1") == ["b", "a", "c"]
    backend.save_group("g-1", ["d"])  # saving again replaces the members
    assert backend.restore_group("g-1") == ["d"]
    backend.forget_group("g-1")
    assert backend.restore_group("g-1") is None
    backend.forget_group("g-1")  # forgetting twice is fine


def test_forgetting_a_chord_group_deletes_its_counter(backend):
    backend.start_chord("c-forget", ["m0", "m1"], BODY)
    assert part_done(backend, "c-forget", "m0") is None
    backend.forget_group("c-forget")
    assert backend.restore_group("c-forget") is None
    assert not ChordCounter.objects.using(backend.alias).exists()
    assert not ChordPart.objects.using(backend.alias).exists()
    assert part_done(backend, "c-forget", "m1") is None


# -- chords -----------------------------------------------------------------------------------


def test_backends_declare_the_chord_counter():
    assert DatabaseBackend.supports_chord_counter is True
    assert ResultBackend.supports_chord_counter is False


def test_a_chord_completes_once_with_results_in_member_order(backend):
    members = [f"m{i}" for i in range(6)]
    backend.start_chord("c-1", members, BODY)
    assert backend.restore_group("c-1") == members
    store_results(backend, {task_id: {"n": i} for i, task_id in enumerate(members)})
    done_order = members[:]
    random.Random(7).shuffle(done_order)

    joins = [part_done(backend, "c-1", task_id) for task_id in done_order]

    assert joins[:-1] == [None] * 5
    assert joins[-1] == ChordJoin("c-1", BODY, tuple(members), results=[{"n": i} for i in range(6)],
                                  failed_task_id=None, error=None)
    counter = ChordCounter.objects.using(backend.alias).get(group_id="c-1")
    assert (counter.total, counter.remaining, counter.failed) == (6, 0, False)
    assert not ChordPart.objects.using(backend.alias).filter(group_id="c-1").exists()


#: More ids than one statement can name in a default SQLite build (32,766 host parameters).
MANY = 40_000


@pytest.fixture
def sqlite_default_limits(backend):
    """Give the SQLite connection the limit of a default build (this one allows 250,000)."""
    db = connections[backend.alias]
    if db.vendor == "sqlite":
        db.ensure_connection()
        db.connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)


def test_a_chord_larger_than_one_statement_can_name_joins(backend, sqlite_default_limits):
    members = [f"big-{i}" for i in range(MANY)]
    backend.start_chord("c-big", members, BODY)
    store_results(backend, {task_id: i for i, task_id in enumerate(members)})
    # Every member but the last has counted (counting 40,000 one by one would be slow).
    ChordCounter.objects.using(backend.alias).filter(group_id="c-big").update(remaining=1)

    join = part_done(backend, "c-big", members[-1])

    assert join.results == list(range(MANY))


def test_reading_more_ids_than_one_statement_can_name(backend, sqlite_default_limits):
    ids = [f"many-{i}" for i in range(MANY)]
    store_results(backend, {ids[0]: "first", ids[-1]: "last"})
    backend.revoke([ids[-1]], expires=None)

    metas = backend.get_many(ids)

    assert list(metas) == ids
    assert (metas[ids[0]].result, metas[ids[-1]].result) == ("first", "last")
    assert metas[ids[1]].status == states.PENDING
    assert backend.revoked(ids) == {ids[-1]}


def test_a_member_without_a_stored_result_joins_as_none(backend):
    backend.start_chord("c-none", ["m0", "m1"], BODY)
    store_results(backend, {"m1": 1})
    assert part_done(backend, "c-none", "m0") is None
    assert part_done(backend, "c-none", "m1").results == [None, 1]


def test_a_duplicate_part_is_not_counted_twice(backend):
    backend.start_chord("c-2", ["m0", "m1", "m2"], BODY)
    assert part_done(backend, "c-2", "m0") is None
    assert part_done(backend, "c-2", "m0") is None  # delivered twice
    assert part_done(backend, "c-2", "m1") is None
    join = part_done(backend, "c-2", "m2")
    assert join is not None
    assert join.results == [None, None, None]
    # After the chord completed, a late duplicate (success or failure) never acts.
    assert part_done(backend, "c-2", "m1") is None
    assert part_done(backend, "c-2", "m2", failed=True) is None
    counter = ChordCounter.objects.using(backend.alias).get(group_id="c-2")
    assert counter.remaining < 0
    assert counter.failed is False


def test_the_first_failure_wins_once(backend):
    members = ["m0", "m1", "m2", "m3"]
    backend.start_chord("c-3", members, BODY)
    error = exception_to_dict(ValueError("bad input", 3))
    TaskResult.objects.using(backend.alias).create(task_id="m1", status=states.FAILURE, result=error)

    assert part_done(backend, "c-3", "m0") is None
    join = part_done(backend, "c-3", "m1", failed=True)
    assert join == ChordJoin("c-3", BODY, tuple(members), results=None, failed_task_id="m1", error=error)
    assert part_done(backend, "c-3", "m1", failed=True) is None  # its duplicate
    assert part_done(backend, "c-3", "m2", failed=True) is None  # a later failure
    assert part_done(backend, "c-3", "m3") is None  # the last part of a failed chord
    counter = ChordCounter.objects.using(backend.alias).get(group_id="c-3")
    assert (counter.remaining, counter.failed) == (0, True)


def test_a_failing_last_part_fails_the_chord(backend):
    backend.start_chord("c-last", ["m0", "m1"], BODY)
    assert part_done(backend, "c-last", "m0") is None
    join = part_done(backend, "c-last", "m1", failed=True)
    assert (join.failed_task_id, join.results, join.error) == ("m1", None, None)


def test_an_exception_in_the_block_rolls_the_count_back(backend):
    # The block matters only when it holds the join: a part that is not the last leaves
    # the caller nothing to publish, so its count may (on PostgreSQL, does) commit first.
    backend.start_chord("c-4", ["m0", "m1"], BODY)
    assert part_done(backend, "c-4", "m1") is None
    with pytest.raises(CrashError) as crashed:
        part_done_then_crash(backend, "c-4", "m0")
    assert crashed.value.join is not None  # the body would have been published here
    join = part_done(backend, "c-4", "m0")  # so the redelivered message completes the chord
    assert join == crashed.value.join


def test_a_part_of_an_unknown_chord_is_not_counted(backend):
    assert part_done(backend, "no-such-chord", "m0") is None
    assert part_done(backend, "no-such-chord", "m0", failed=True) is None
    assert not ChordPart.objects.using(backend.alias).exists()


def test_starting_a_chord_again_keeps_the_first_counter(backend):
    backend.start_chord("c-5", ["m0", "m1"], BODY)
    assert part_done(backend, "c-5", "m0") is None
    backend.start_chord("c-5", ["m0", "m1"], BODY)
    assert part_done(backend, "c-5", "m1") is not None


def test_a_chord_without_members_is_refused(backend):
    with pytest.raises(ValueError, match="expected at least one header task id"):
        backend.start_chord("c-empty", [], BODY)


def test_counting_a_part_writes_first(backend):
    # On SQLite a transaction whose first statement reads cannot always upgrade to a write
    # while another holds the lock; one that writes first waits for it instead.
    backend.start_chord("c-6", ["m0", "m1", "m2"], BODY)
    for task_id in ("m0", "m1"):  # on PostgreSQL the last part alone takes a transaction
        part_done(backend, "c-6", task_id)
    with CaptureQueriesContext(connections[backend.alias]) as queries:
        part_done(backend, "c-6", "m2")
    statements = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    # On PostgreSQL the one statement (WITH ...) is tried first: it leaves the last part alone.
    work = [s for s in statements
            if not s.startswith(("WITH", "BEGIN", "SAVEPOINT", "RELEASE", "COMMIT"))]
    assert work[0].startswith("INSERT"), statements
    assert work[1].startswith("UPDATE"), statements


def test_a_part_that_is_not_the_last_costs_one_statement_on_postgres(backend):
    backend.start_chord("c-7", ["m0", "m1", "m2"], BODY)
    with CaptureQueriesContext(connections[backend.alias]) as queries:
        assert part_done(backend, "c-7", "m0") is None
    if backend.is_postgres:
        assert len(queries) == 1, queries.captured_queries  # autocommit: no BEGIN, no COMMIT
    else:  # the transaction: insert the part, decrement the counter RETURNING what is left
        work = [q["sql"] for q in queries.captured_queries
                if not q["sql"].lstrip().upper().startswith(("BEGIN", "COMMIT"))]
        assert len(work) == 2, queries.captured_queries
    assert part_done(backend, "c-7", "m0") is None  # its duplicate counts nothing
    assert ChordCounter.objects.using(backend.alias).get(group_id="c-7").remaining == 2


def count_in_threads(backend, group_id, task_lists, *, store_first=None):
    """Count each list of parts in a thread of its own, all at once; return the joins.

    ``store_first``, when given, maps a task id to the result its thread stores before
    counting it, as a worker does.
    """
    joins, errors = [], []
    start = threading.Barrier(len(task_lists))

    def complete(task_ids):
        try:
            start.wait(timeout=30)
            for task_id in task_ids:
                if store_first is not None:
                    backend.store(task_id, states.SUCCESS, store_first[task_id])
                with backend.chord_part_done(group_id, task_id, failed=False) as join:
                    if join is not None:
                        joins.append(join)
        except BaseException as exc:  # reported by the assertions below
            errors.append(exc)
        finally:
            connections[backend.alias].close()  # this thread's own connection

    threads = [threading.Thread(target=complete, args=(task_ids,)) for task_ids in task_lists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    return joins


def test_concurrent_parts_join_the_chord_exactly_once(backend):
    members = [f"m{i:03d}" for i in range(200)]
    backend.start_chord("c-many", members, BODY)
    store_results(backend, {task_id: i for i, task_id in enumerate(members)})

    joins = count_in_threads(backend, "c-many", [members[k::8] for k in range(8)])

    assert len(joins) == 1
    assert joins[0].results == list(range(200))
    assert ChordCounter.objects.using(backend.alias).get(group_id="c-many").remaining == 0


def test_parts_delivered_twice_at_once_join_the_chord_exactly_once(backend):
    # Every part is counted by two threads at the same moment, as by two workers that got
    # the same message: the body must fire once, and only after every part is counted
    # (each thread stores the result first: an early join would find results missing).
    members = [f"d{i:02d}" for i in range(40)]
    backend.start_chord("c-dup", members, BODY)

    # Threads k and k + 4 count the same members, in the same order.
    joins = count_in_threads(backend, "c-dup", [members[k % 4::4] for k in range(8)],
                             store_first={task_id: i for i, task_id in enumerate(members)})

    assert len(joins) == 1
    assert joins[0].results == list(range(40))
    # A twin that comes after the join counts again (the parts are gone): never above 0.
    assert ChordCounter.objects.using(backend.alias).get(group_id="c-dup").remaining <= 0


# -- revoked ids ------------------------------------------------------------------------------


def test_revoked_ids_until_they_expire(backend):
    now = timezone.now()
    assert backend.revoked(["a", "b"]) == set()
    assert backend.revoked([]) == set()
    assert backend.revoked_since(None) == (set(), None)

    backend.revoke(["a", "b", "a"], expires=None)
    backend.revoke(["gone"], expires=now - timedelta(seconds=1))
    backend.revoke(["later"], expires=now + timedelta(hours=1))
    assert backend.revoked(["a", "b", "gone", "later", "never"]) == {"a", "b", "later"}

    ids, newest = backend.revoked_since(None)
    assert ids == {"a", "b", "later"}
    assert newest is not None
    assert newest.tzinfo is not None
    assert backend.revoked_since(newest) == (set(), newest)

    backend.revoke(["c", "gone"], expires=None)  # revoking again renews and clears the expiry
    ids, newer = backend.revoked_since(newest)
    assert ids == {"c", "gone"}
    assert newer > newest
    assert backend.revoked(["gone"]) == {"gone"}


# -- the result graph -------------------------------------------------------------------------


def test_children_and_the_graph_ids_round_trip(backend):
    info = ExecutionInfo(task_name="tests.parent", parent_id="p-0", root_id="r-0", group_id="g-0",
                         children=("c-1", "c-2"))
    backend.store("p-1", states.STARTED, info=info)
    backend.store("p-1", states.SUCCESS, 5, info=info)
    meta = backend.get_meta("p-1")
    assert (meta.parent_id, meta.root_id, meta.group_id) == ("p-0", "r-0", "g-0")
    assert meta.children == ("c-1", "c-2")
    backend.store("p-1", states.SUCCESS, 6)  # without info: the graph stays as it was
    assert backend.get_meta("p-1").children == ("c-1", "c-2")
    assert backend.get_meta("unknown").children == ()


def test_get_many_reads_every_id_in_one_query(backend, django_assert_num_queries):
    backend.store("a", states.SUCCESS, 1, info=ExecutionInfo(task_name="tests.a", children=("k",)))
    backend.store("b", states.FAILURE, exception_to_dict(KeyError("b")))
    expected_a, expected_b = backend.get_meta("a"), backend.get_meta("b")
    with django_assert_num_queries(1, connection=connections[backend.alias]):
        metas = backend.get_many(["b", "missing", "a"])
    assert list(metas) == ["b", "missing", "a"]
    assert metas == {"b": expected_b, "missing": ResultMeta("missing"), "a": expected_a}
    assert metas["a"].children == ("k",)
    with django_assert_num_queries(0, connection=connections[backend.alias]):
        assert backend.get_many([]) == {}


# -- the interface's defaults -----------------------------------------------------------------


class MinimalBackend(ResultBackend):
    """Only what a backend must implement: the canvas methods keep their defaults."""

    def store(self, task_id, status, result=None, *, traceback="", info=None, confirm=True):
        pass

    def get_meta(self, task_id):
        return ResultMeta(task_id)

    def forget(self, task_id):
        pass


def test_get_many_defaults_to_one_get_meta_per_id():
    assert MinimalBackend().get_many(["x", "y"]) == {"x": ResultMeta("x"), "y": ResultMeta("y")}


def test_unsupported_methods_name_the_backend():
    backend = MinimalBackend()
    calls = {
        "groups": [lambda: backend.save_group("g", ["a"]), lambda: backend.restore_group("g"),
                   lambda: backend.forget_group("g")],
        "chord counters": [lambda: backend.start_chord("g", ["a"], BODY),
                           lambda: backend.chord_part_done("g", "a", failed=False)],
        "revoked ids": [lambda: backend.revoke(["a"], None), lambda: backend.revoked(["a"]),
                        lambda: backend.revoked_since(None)],
    }
    for what, methods in calls.items():
        for method in methods:
            with pytest.raises(NotImplementedError, match=f"^MinimalBackend does not store {what}$"):
                method()
