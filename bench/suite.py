"""Run the cases: each system on each broker, one after the other (bench layer).

A case is up to four phases on fresh queues:

1. results off: publish stamp, N no-ops with ``ignore_result=True``, stamp; start a worker;
   wait until it ran the closing stamp;
2. results on: the same with ``delay()`` on a new queue and a new worker;
3. latency: sequential ``delay().get()`` round trips against phase 2's worker, now idle;
4. chord (``--chord N``): start a worker, then send one chord of N header tasks and time
   it until the body's value is read.

Phases 1-3 are skipped with ``--n 0``, phase 4 unless ``--chord`` is given.
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
    chord: int = 0  # header tasks of the chord phase (0: no chord phase)
    events: bool = False  # workers send task events (-E)


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
            case.enqueue_ignored, case.drain_ignored, _ = phase(system, broker, options, case,
                                                                 ignore_result=True)
            case.enqueue_stored, case.drain_stored, case.latency = phase(
                system, broker, options, case, ignore_result=False)
        except RunError as exc:
            case.note = "failed"
            say(f"  FAILED: {exc}")
    if options.chord:
        try:
            case.chord = chord_phase(system, broker, options)
        except RunError as exc:
            case.chord = {"note": "failed"}
            say(f"  FAILED: {exc}")
    return case


def settle(options: Options, case: Case | None = None) -> bool:
    """Wait for other processes of the machine to calm down; True (and noted) if they never do."""
    if options.idle_wait <= 0:
        return False
    if wait_until_idle(options.idle_threshold, options.idle_wait) is not None:
        return False
    if case is not None:
        case.busy = True
    say(f"  warning: CPU still over {options.idle_threshold:.0%} busy after "
        f"{options.idle_wait:.0f} s; measuring anyway")
    return True


def phase(system: System, broker: Broker, options: Options, case: Case, *,
          ignore_result: bool) -> tuple[float, float, dict]:
    """Enqueue, drain with a fresh worker, and (results on) time round trips."""
    name = "off" if ignore_result else "on"
    queue = f"bench-{system.key}-{broker.key}-{name}-{uuid.uuid4().hex[:8]}"
    env = system.env(broker, queue)
    label = f"{system.key}/{broker.key}/results {name}"
    flag = ["--ignore-result"] if ignore_result else []
    latency: dict = {}
    with fresh_queue(system, env, queue):
        settle(options, case)
        sent = run_client([system.key, "enqueue", "--n", str(options.n), "--label", label, *flag], env)
        say(f"  {label}: enqueued {options.n:,} in {sent['seconds']:.1f} s = {sent['rate']:,.0f}/s")
        settle(options, case)
        with running_worker(system, options, env, queue, f"{system.key}-{broker.key}-{name}") as worker:
            with profiled(options, worker):
                drained = run_client([system.key, "drain", "--n", str(options.n), "--label", label,
                                      "--stamps", ",".join(sent["stamps"]),
                                      "--noops", ",".join(sent["noops"]), *flag], env, worker)
            say(f"  {label}: drained {options.n:,} in {drained['seconds']:.1f} s = "
                f"{drained['rate']:,.0f}/s")
            if not ignore_result and options.latency_n:
                latency = run_client([system.key, "latency", "--n", str(options.latency_n),
                                      "--label", label], env, worker)
                say(f"  {label}: round trip p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")
    return sent["rate"], drained["rate"], latency


def chord_phase(system: System, broker: Broker, options: Options) -> dict:
    """Time one chord of ``options.chord`` header tasks against a fresh, running worker."""
    queue = f"bench-{system.key}-{broker.key}-chord-{uuid.uuid4().hex[:8]}"
    env = system.env(broker, queue)
    label = f"{system.key}/{broker.key}/chord"
    with fresh_queue(system, env, queue), \
            running_worker(system, options, env, queue, f"{system.key}-{broker.key}-chord") as worker:
        busy = settle(options)
        with profiled(options, worker):
            outcome = run_client([system.key, "chord", "--n", str(options.chord), "--label", label],
                                 env, worker)
        # A chord takes seconds: look again, so that tests started meanwhile are noticed too.
        busy = still_busy(options) or busy
    say(f"  {label}: chord of {options.chord:,} in {outcome['seconds']:.2f} s = "
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
        run_client([system.key, "reset"], env)
        yield
    finally:
        try:
            run_client([system.key, "cleanup"], env)
        except RunError as exc:
            say(f"  warning: cleanup of {queue} failed: {exc}")


@contextlib.contextmanager
def running_worker(system: System, options: Options, env: dict[str, str], queue: str,
                   stem: str) -> Iterator[Worker]:
    """Start a worker on ``queue``, logging to ``<logs>/<stem>.log``; stop it after the block."""
    worker = Worker(system.worker_argv(queue, concurrency=options.concurrency, pool=options.pool,
                                       events=options.events),
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
