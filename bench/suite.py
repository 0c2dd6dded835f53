"""Run the cases: each system on each broker, one after the other (bench layer).

A case is up to five phases on fresh queues:

1. results off: publish stamp, N no-ops with ``ignore_result=True``, stamp; start a worker;
   wait until it ran the closing stamp;
2. results on: the same with ``delay()`` on a new queue and a new worker;
3. latency: sequential ``delay().get()`` round trips against phase 2's worker, now idle;
4. chord (``--chord N,M``): for each size, start a worker, then send one chord of N header
   tasks and time it until the body's value is read;
5. threads (``--threads-n N``): as 1, with N tasks that sleep 10 ms, drained by a
   ``-P threads -c 8`` worker.

Phases 1-3 are skipped with ``--n 0``, phases 4 and 5 unless asked for. A system with
``stored_only`` (Celery with django-celery-results) runs phase 2, its round trips and
the chords. The memory and cost-growth rows are ``bench.memory`` and ``bench.growth``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.brokers import Broker
from bench.profiler import Profiler
from bench.quiet import wait_until_idle
from bench.report import Case
from bench.runner import RunError, Worker, run_client
from bench.systems import System


@dataclass(frozen=True)
class Options:
    n: int
    latency_n: int
    concurrency: int
    pool: str
    logs: Path
    profile: Path | None = None  # py-spy output directory
    profile_idle: bool = False
    idle_wait: float = 120.0  # seconds to wait for an idle machine before a measurement
    idle_threshold: float = 0.15  # share of all CPUs that counts as idle
    chords: tuple[int, ...] = ()  # header tasks of each chord phase (none: no chord phase)
    events: bool = False  # workers send task events (-E)
    threads_n: int = 0  # 10 ms sleeps of the threads-pool row (0: no such row)
    threads_concurrency: int = 8
    memory_n: int = 0  # tasks of the memory row (0: no such row)
    growth: tuple[int, int] | None = None  # (results, messages) of the cost-growth row


@dataclass(frozen=True)
class Run:
    """One enqueue-then-drain phase: what is published, and the worker that drains it."""

    name: str  # in the queue's name and the worker's log: "off", "on", "threads", ...
    n: int
    ignore_result: bool
    task: str = "noop"  # or "pause", 10 ms of sleep
    pool: str | None = None  # None: the options' pool and concurrency
    concurrency: int | None = None
    latency_n: int = 0  # round trips against the idle worker afterwards
    fill: tuple[int, int] | None = None  # (results, messages) added to the tables first


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_case(system: System, broker: Broker, options: Options) -> Case:
    """Measure ``system`` on ``broker``; a failure is noted in the Case, not raised."""
    case = Case(broker.key, system.key)
    if not system.supports(broker):
        case.note = "n/a"
        return case
    down = broker.down()
    if down:
        case.note = f"skipped: nothing answers on {', '.join(down)}"
        say(f"  {case.note}")
        return case
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(f"== {system.title} on {broker.title} (load average {load})")
    if options.n:
        try:
            main_phases(system, broker, options, case)
        except RunError as exc:
            case.note = "failed"
            say(f"  FAILED: {exc}")
    for size in options.chords:
        try:
            case.chords.append(chord_phase(system, broker, options, size))
        except RunError as exc:
            case.chords.append({"n": size, "note": "failed"})
            say(f"  FAILED: {exc}")
    if options.threads_n:
        case.threads = threads_phase(system, broker, options)
    return case


def main_phases(system: System, broker: Broker, options: Options, case: Case) -> None:
    """Results off (unless the system is measured with results only), results on, round trips."""
    if not system.stored_only:
        off = phase(system, broker, options, Run("off", options.n, ignore_result=True))
        case.enqueue_ignored, case.drain_ignored, case.busy = off["enqueue"], off["drain"], off["busy"]
    latency_n = min(options.latency_n, system.latency_cap or options.latency_n)
    on = phase(system, broker, options, Run("on", options.n, ignore_result=False, latency_n=latency_n))
    case.enqueue_stored, case.drain_stored, case.latency = on["enqueue"], on["drain"], on["latency"]
    case.busy = case.busy or on["busy"]


def threads_phase(system: System, broker: Broker, options: Options) -> dict:
    """The threads-pool row: N tasks that sleep 10 ms, drained by ``-P threads -c 8``."""
    if system.stored_only:
        return {"note": "n/a"}
    run = Run("threads", options.threads_n, ignore_result=True, task="pause", pool="threads",
              concurrency=options.threads_concurrency)
    try:
        found = phase(system, broker, options, run)
    except RunError as exc:
        say(f"  FAILED: {exc}")
        return {"note": "failed"}
    return {"n": run.n, "concurrency": run.concurrency, "enqueue": found["enqueue"],
            "drain": found["drain"], "busy": found["busy"]}


def settle(options: Options) -> bool:
    """Wait for other processes of the machine to calm down; True (and said) if they never do."""
    if options.idle_wait <= 0:
        return False
    if wait_until_idle(options.idle_threshold, options.idle_wait) is not None:
        return False
    say(f"  warning: CPU still over {options.idle_threshold:.0%} busy after "
        f"{options.idle_wait:.0f} s; measuring anyway")
    return True


def phase(system: System, broker: Broker, options: Options, run: Run) -> dict:
    """Enqueue, drain with a fresh worker, and (``latency_n``) time round trips.

    Return the rates ``enqueue`` and ``drain`` (tasks/s), ``latency`` ({} without round
    trips) and ``busy``: the machine was not idle before some measurement.
    """
    queue = f"bench-{system.key}-{broker.key}-{run.name}-{uuid.uuid4().hex[:8]}"
    env = system.env(broker, queue)
    label = f"{system.key}/{broker.key}/{run.name}"
    flag = ["--ignore-result"] if run.ignore_result else []
    latency: dict = {}
    with fresh_queue(system, env, queue):
        if run.fill:
            say(f"  {label}: adding {run.fill[0]:,} results and {run.fill[1]:,} waiting messages")
            run_client([system.side, "fill", "--results", str(run.fill[0]),
                        "--messages", str(run.fill[1])], env)
        busy = settle(options)
        sent = run_client([system.side, "enqueue", "--n", str(run.n), "--label", label,
                           "--task", run.task, *flag], env)
        say(f"  {label}: enqueued {run.n:,} in {sent['seconds']:.1f} s = {sent['rate']:,.0f}/s")
        busy = settle(options) or busy
        with running_worker(system, options, env, queue, f"{system.key}-{broker.key}-{run.name}",
                            pool=run.pool, concurrency=run.concurrency) as worker:
            with profiled(options, worker):
                drained = run_client([system.side, "drain", "--n", str(run.n), "--label", label,
                                      "--stamps", ",".join(sent["stamps"]),
                                      "--noops", ",".join(sent["noops"]), *flag], env, worker)
            say(f"  {label}: drained {run.n:,} in {drained['seconds']:.1f} s = "
                f"{drained['rate']:,.0f}/s")
            if run.latency_n:
                latency = run_client([system.side, "latency", "--n", str(run.latency_n),
                                      "--label", label], env, worker)
                say(f"  {label}: round trip p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")
    return {"enqueue": sent["rate"], "drain": drained["rate"], "latency": latency, "busy": busy}


def chord_phase(system: System, broker: Broker, options: Options, size: int) -> dict:
    """Time one chord of ``size`` header tasks against a fresh, running worker."""
    queue = f"bench-{system.key}-{broker.key}-chord-{uuid.uuid4().hex[:8]}"
    env = system.env(broker, queue)
    label = f"{system.key}/{broker.key}/chord {size:,}"
    with fresh_queue(system, env, queue), \
            running_worker(system, options, env, queue, f"{system.key}-{broker.key}-chord-{size}") as worker:
        busy = settle(options)
        with profiled(options, worker):
            outcome = run_client([system.side, "chord", "--n", str(size), "--label", label],
                                 env, worker)
        # A chord takes seconds: look again, so that tests started meanwhile are noticed too.
        busy = still_busy(options) or busy
    say(f"  {label}: chord of {size:,} in {outcome['seconds']:.2f} s = "
        f"{outcome['rate']:,.0f} header tasks/s (sent in {outcome['sent']:.2f} s)")
    return {**outcome, "busy": busy}


def still_busy(options: Options) -> bool:
    """True (and said) when the CPUs are over the idle threshold now (one look, no waiting)."""
    if options.idle_wait <= 0 or wait_until_idle(options.idle_threshold, 0) is not None:
        return False
    say(f"  warning: CPU over {options.idle_threshold:.0%} busy right after the measurement")
    return True


@contextlib.contextmanager
def fresh_queue(system: System, env: dict[str, str], queue: str) -> Iterator[None]:
    """Empty the queue and the results before the block; purge and delete them after it."""
    try:
        run_client([system.side, "reset"], env)
        yield
    finally:
        try:
            run_client([system.side, "cleanup"], env)
        except RunError as exc:
            say(f"  warning: cleanup of {queue} failed: {exc}")


@contextlib.contextmanager
def running_worker(system: System, options: Options, env: dict[str, str], queue: str,
                   stem: str, *, pool: str | None = None, concurrency: int | None = None) -> Iterator[Worker]:
    """Start a worker on ``queue``, logging to ``<logs>/<stem>.log``; stop it after the block.

    ``pool``, ``concurrency``: instead of the options' (the threads-pool row).
    """
    worker = Worker(system.worker_argv(queue, concurrency=concurrency or options.concurrency,
                                       pool=pool or options.pool, events=options.events),
                    env, options.logs / f"{stem}.log")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@contextlib.contextmanager
def profiled(options: Options, worker: Worker) -> Iterator[None]:
    """With ``--profile``: sample ``worker`` during the block, into ``<profile>/<log stem>.txt``."""
    profiler = None
    if options.profile:
        profiler = Profiler(worker.pid, options.profile / f"{worker.log_path.stem}.txt",
                            idle=options.profile_idle)
    try:
        yield
    finally:
        if profiler is not None:
            profiler.stop()


def remove_logs(logs: Path) -> None:
    shutil.rmtree(logs, ignore_errors=True)
