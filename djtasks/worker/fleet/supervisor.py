"""Fleet: the prefork pool whose children consume from the broker themselves (processes layer).

The parent of a fleet receives no task: it keeps the remote-control mailbox, the heartbeat
and beat, and supervises. A thread of it reaps children and forks their replacements,
kills a child whose task ran past its hard time limit, and reports the task a dead child
was running (from its slot, ``slots.py``) to the parent's consumer as lost, so that the
parent's features record it exactly as the pool-fed prefork worker does.

A remote-control question about tasks (active, reserved, stats, ...) goes to every child
over its pipe and the answers are merged (``gather``).
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe
from typing import Any, ClassVar, NoReturn

from django.db import connections

from djtasks.backends.fork_safety import DATABASE_WRITES
from djtasks.worker.fleet.slots import LostRequest, Running, RunningSlots
from djtasks.worker.heartbeat import WorkerStats
from djtasks.worker.pools.base import (
    OnDone,
    Outcome,
    Pool,
    PoolFull,
    WorkerLost,
    check_member_count,
)
from djtasks.worker.pools.process import flush_std_streams, reap, send_signal
from djtasks.worker.pools.timelimits import Timeout

logger = logging.getLogger("djtasks.worker.pools")

#: How often the supervisor looks for dead children and hard deadlines.
SUPERVISE_EVERY = 0.1
#: A child that dies sooner than this after its fork without saying ready waits this long
#: before it is forked again: a broken set-up must not become a fork loop.
RESPAWN_BACKOFF = 1.0
#: Slots made at start: pool_grow can add children up to this many (untouched slots cost
#: address space, not memory).
MIN_CAPACITY = 64
#: How long a dead child's slot keeps naming the task it ran, before a new child gets the
#: slot: the sibling that receives that task's message again reads it there (orphans.py).
TOMBSTONE_SECONDS = 30.0
#: How long remote control waits for the children's answers.
GATHER_TIMEOUT = 0.8

#: Forks one child: (index, the child's end of its pipe, descriptors to close) -> never returns.
SpawnChild = Callable[[int, Connection, list[Any]], NoReturn]
#: Reports a lost task to the parent's consumer: (the Request, its lost Outcome, the
#: delivery tag of its message on the dead child's channel).
OnLost = Callable[[Any, Outcome, Any], None]


@dataclass
class Member:
    """One child of the fleet, by its slot index."""

    index: int
    pid: int
    conn: Connection
    forked: float
    ready: bool = False
    retiring: bool = False  # asked to stop for good (shrink, restart, warm stop)
    hard_limit: float | None = None  # set when the parent killed it for its hard time limit
    cold: bool = False  # sent SIGQUIT: it reports its own running task
    replies: dict[int, Any] = field(default_factory=dict)


class Fleet(Pool):
    """Children that consume and run tasks; the parent only supervises them."""

    name: ClassVar[str] = "prefork"
    supports_hard_kill: ClassVar[bool] = True
    supports_recycling: ClassVar[bool] = True
    in_process: ClassVar[bool] = False

    def __init__(self, limit: int, target: Any = None, *, spawn: SpawnChild, on_lost: OnLost,
                 capacity: int | None = None, **options: Any) -> None:
        super().__init__(limit, target, **options)
        self.spawn_child = spawn
        self.on_lost = on_lost
        #: The parent's counters (the heartbeat's): the supervisor sums the children's into them.
        self.stats = WorkerStats()
        self._retired_counts = (0, 0)  # what the children that are gone had finished, failed
        self.slots = RunningSlots(max(capacity or 0, limit, MIN_CAPACITY))
        self.members: dict[int, Member] = {}  # by slot index
        self._lock = threading.RLock()
        self._stopping = False
        self._tickets = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._not_before: dict[int, float] = {}  # index -> when it may be forked again
        self._died_running: dict[int, float] = {}  # index -> when its child died mid-task

    # -- Pool ----------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            for index in range(self.limit):
                self._fork(index)
        self._thread = threading.Thread(target=self._supervise, name="djtasks-fleet", daemon=True)
        self._thread.start()

    def free_slots(self) -> int:
        return 0  # the parent hands out nothing: its children take their own tasks

    def submit(self, job: Any, on_done: OnDone) -> None:
        raise PoolFull("a fleet's parent runs no task; its children consume them")

    def wait_for_free_slot(self, timeout: float | None) -> bool:
        return False

    def stop(self, wait: bool = True) -> None:
        """Warm: each child stops consuming, finishes its task and exits. Cold: SIGQUIT."""
        with self._lock:
            self._stopping = True
            members = list(self.members.values())
            for member in members:
                member.retiring = True
                if wait:
                    self._tell(member, "stop")
                else:
                    member.cold = True
                    send_signal(member.pid, signal.SIGQUIT)
        for member in members:
            self._wait_exit(member, None if wait else 10.0)
        self._halt.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._reap_all()

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {"pool": self.name, "limit": self.limit, "consumers": "children",
                    "processes": [member.pid for member in self.members.values()],
                    "running": sum(self.slots.busy(index) for index in self.members)}

    def kill_job(self, match: Callable[[Any], bool], sig: int) -> bool:
        with self._lock:
            for index, member in self.members.items():
                running = self.slots.read(index)
                if running is not None and _matches(match, running):
                    send_signal(member.pid, sig)
                    return True
        return False

    def member_pid(self, job: Any) -> int:
        task_id = job.message.id
        with self._lock:
            for index, member in self.members.items():
                running = self.slots.read(index)
                if running is not None and _task_id(running) == task_id:
                    return member.pid
        return 0

    def grow(self, n: int = 1) -> None:
        """Fork ``n`` more children; each consumes once it has connected."""
        check_member_count(n, "processes")
        with self._lock:
            free = [index for index in range(self.slots.count) if index not in self.members]
            if len(free) < n:
                raise ValueError(f"pool_grow: room for {len(free)} more processes, got {n}")
            free.sort(key=lambda index: self._died_running.get(index, 0.0))
            for index in free[:n]:
                self._died_running.pop(index, None)
                self._fork(index)
            self.limit += n

    def shrink(self, n: int = 1) -> None:
        """Stop ``n`` children warmly, idle ones first (a busy one after its task); one stays."""
        check_member_count(n, "processes")
        with self._lock:
            if n > self.limit - 1:
                raise ValueError(f"pool_shrink: expected at most {self.limit - 1} "
                                 f"(one process stays), got {n}")
            staying = [member for member in self.members.values() if not member.retiring]
            for member in sorted(staying, key=lambda member: self.slots.busy(member.index))[:n]:
                member.retiring = True
                self._tell(member, "stop")
            self.limit -= n

    def restart(self) -> None:
        """Each child stops warmly and a new one takes its place."""
        with self._lock:
            for member in list(self.members.values()):
                self._tell(member, "stop")

    # -- remote control ------------------------------------------------------------
    def gather(self, command: str, arguments: dict[str, Any],
               timeout: float = GATHER_TIMEOUT) -> list[Any]:
        """Ask every ready child ``command``; return the answers that came within ``timeout``."""
        with self._lock:
            asked = {member.index: member for member in self.members.values()
                     if member.ready and not member.retiring}
        tickets = {}
        for index, member in asked.items():
            ticket = next(self._tickets)
            if self._tell(member, command, arguments, ticket):
                tickets[index] = ticket
        answers: list[Any] = []
        deadline = time.monotonic() + timeout
        pending = dict(tickets)
        while pending and (left := deadline - time.monotonic()) > 0:
            readable = _readable([asked[index].conn for index in pending], left)
            for index in list(pending):
                member = asked[index]
                if member.conn.closed:  # buried meanwhile (it died, or a restart replaced it)
                    del pending[index]
                    continue
                if _fileno(member.conn) in readable:
                    self._read_replies(member)
                if pending[index] in member.replies:
                    answers.append(member.replies.pop(pending.pop(index)))
        return answers

    def tell_all(self, command: str, arguments: dict[str, Any]) -> None:
        """Send ``command`` to every child without waiting for an answer."""
        with self._lock:
            for member in self.members.values():
                self._tell(member, command, arguments)

    # -- children ------------------------------------------------------------------
    def _fork(self, index: int) -> None:
        parent_end, child_end = Pipe()
        self.slots.reset(index)
        inherited = [member.conn for member in self.members.values()] + [parent_end]
        connections.close_all()  # the child must not share our database sockets
        flush_std_streams()
        with DATABASE_WRITES.forking():
            pid = os.fork()
        if pid == 0:
            self.spawn_child(index, child_end, inherited)
        child_end.close()
        self.members[index] = Member(index, pid, parent_end, forked=time.monotonic())

    def _tell(self, member: Member, command: str, arguments: dict | None = None,
              ticket: int = 0) -> bool:
        try:
            member.conn.send_bytes(pickle.dumps((ticket, command, arguments or {})))
        except (OSError, ValueError):  # it is dying; the supervisor buries it
            return False
        return True

    def _read_replies(self, member: Member) -> None:
        # The supervisor (for "ready") and remote control (for answers) both read pipes.
        with self._lock:
            self._read_replies_locked(member)

    def _read_replies_locked(self, member: Member) -> None:
        try:
            while member.conn.poll():
                kind, ticket, value = pickle.loads(member.conn.recv_bytes())  # noqa: S301 - our child wrote it
                if kind == "ready":
                    member.ready = True
                else:
                    member.replies[ticket] = value
        except (EOFError, OSError, ValueError):
            pass  # it died; the supervisor buries it

    def _supervise(self) -> None:
        while not self._halt.wait(SUPERVISE_EVERY):
            try:
                self._supervise_once()
            except Exception:  # the supervisor must outlive any one child's trouble
                logger.exception("worker: the fleet's supervisor hit an error; going on")

    def _supervise_once(self) -> None:
        now = time.time()
        with self._lock:
            members = list(self.members.values())
        for member in members:
            if not member.ready:
                self._read_replies(member)
            deadline = self.slots.hard_deadline(member.index)
            if deadline is not None and now > deadline and member.hard_limit is None:
                running = self.slots.read(member.index)
                if running is not None and running.hard_deadline is not None:
                    member.hard_limit = running.hard_deadline - running.started
                    logger.error("Hard time limit (%gs) exceeded for %s; killing its process %s",
                                 member.hard_limit, _label(running), member.pid)
                    send_signal(member.pid, signal.SIGKILL)
            try:
                reaped, status = os.waitpid(member.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by a stop meanwhile, which buried it
                continue
            if reaped:
                self._bury(member, status)
        self._fork_missing()
        self._sum_counts()

    def _sum_counts(self) -> None:
        processed, failed = self._retired_counts
        running = 0
        with self._lock:
            for index in self.members:
                done, bad = self.slots.counts(index)
                processed, failed = processed + done, failed + bad
                running += self.slots.busy(index)
        self.stats.processed, self.stats.failed, self.stats.active = processed, failed, running

    def _bury(self, member: Member, status: int | None) -> None:
        running = self.slots.read(member.index)
        with self._lock:
            if self.members.get(member.index) is not member:
                return  # buried already
            del self.members[member.index]
            done, bad = self.slots.counts(member.index)
            self._retired_counts = (self._retired_counts[0] + done, self._retired_counts[1] + bad)
            if not member.ready and not member.retiring:
                self._not_before[member.index] = time.monotonic() + RESPAWN_BACKOFF
        member.conn.close()
        lost = WorkerLost.from_wait_status(member.pid, status)
        if not member.ready and not member.retiring and time.monotonic() - member.forked < RESPAWN_BACKOFF:
            logger.error("worker: process %s exited before it was ready (%s); forking again in "
                         "%gs", member.pid, lost, RESPAWN_BACKOFF)
        if running is None or member.cold:
            return  # idle, or it reported its own task as it went (cold stop)
        with self._lock:
            self._died_running[member.index] = time.monotonic()
        if isinstance(running.request, LostRequest):
            logger.error("Task %s[%s] lost with process %s; its request was too big to keep",
                         running.request.name, running.request.task_id, member.pid)
            return
        logger.error("Process %s running %s exited: %s", member.pid, _label(running), lost)
        timeout = Timeout(soft=False, limit=member.hard_limit) if member.hard_limit else None
        self.on_lost(running.request, Outcome(lost=lost, timeout=timeout), running.delivery_tag)

    def _fork_missing(self) -> None:
        with self._lock:
            if self._stopping:
                return
            staying = sum(1 for member in self.members.values() if not member.retiring)
            wanted = self.limit - staying
            now = time.monotonic()
            for index, died in list(self._died_running.items()):
                if now - died > TOMBSTONE_SECONDS:
                    del self._died_running[index]
            free = [index for index in range(self.slots.count)
                    if index not in self.members and self._not_before.get(index, 0.0) <= now]
            # Slots that name a dead child's task last; the oldest of them first.
            free.sort(key=lambda index: self._died_running.get(index, 0.0))
            for index in free[:max(wanted, 0)]:
                self._died_running.pop(index, None)
                self._fork(index)

    def _wait_exit(self, member: Member, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            with self._lock:
                if member.index not in self.members or self.members[member.index] is not member:
                    return  # the supervisor buried it
            try:
                reaped, status = os.waitpid(member.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if reaped:
                self._bury(member, status)
                return
            time.sleep(0.02)
        send_signal(member.pid, signal.SIGKILL)

    def _reap_all(self) -> None:
        with self._lock:
            members = list(self.members.values())
        for member in members:
            self._bury(member, reap(member.pid))


def _fileno(conn: Connection) -> int:
    try:
        return conn.fileno()
    except OSError:  # closed by the supervisor's thread since it was looked at
        return -1


def _readable(conns: list[Connection], timeout: float) -> set[int]:
    try:
        ready, _, _ = select.select([conn.fileno() for conn in conns], [], [], timeout)
    except (OSError, ValueError):
        return set()
    return set(ready)


def _task_id(running: Running) -> str:
    request = running.request
    return request.task_id if isinstance(request, LostRequest) else request.message.id


def _matches(match: Callable[[Any], bool], running: Running) -> bool:
    return not isinstance(running.request, LostRequest) and match(running.request)


def _label(running: Running) -> str:
    request = running.request
    if isinstance(request, LostRequest):
        return f"{request.name}[{request.task_id}]"
    return str(getattr(request, "label", request))
