"""The memory row: a worker's PSS when idle and its RSS growth over many tasks (bench layer).

A worker and its pool children share one session (``bench.runner`` starts each worker in
a session of its own), so the session's processes are the worker. PSS (proportional set
size, from ``/proc/<pid>/smaps_rollup``) charges each shared page to its sharers in equal
parts, so the PSS of the processes adds up to what the worker costs the machine; RSS
counts a shared page in every process that maps it, and is only compared with itself.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from bench.brokers import Broker
from bench.runner import RunError, run_client
from bench.suite import Options, fresh_queue, running_worker, say
from bench.systems import System

IDLE_SECONDS = 5.0  # a worker left alone this long after its ready line counts as idle
WARMUP_TASKS = 2_000  # run before the first RSS sample: imports, caches, connections
PROC = Path("/proc")


def memory_phase(system: System, broker: Broker, options: Options) -> dict:
    """Start a worker; sample it idle, after a warm-up, and after ``options.memory_n`` tasks."""
    if system.stored_only:
        return {"note": "n/a"}
    if not (PROC / "self" / "smaps_rollup").exists():
        return {"note": "no /proc/<pid>/smaps_rollup"}
    queue = f"bench-{system.key}-{broker.key}-memory-{uuid.uuid4().hex[:8]}"
    env = system.env(broker, queue)
    label = f"{system.key}/{broker.key}/memory"
    try:
        with fresh_queue(system, env, queue), \
                running_worker(system, options, env, queue, f"{system.key}-{broker.key}-memory") as worker:
            time.sleep(IDLE_SECONDS)
            idle = sample(worker.pid)
            run_client([system.side, "feed", "--n", str(WARMUP_TASKS), "--label", label], env, worker)
            start = sample(worker.pid)
            fed = run_client([system.side, "feed", "--n", str(options.memory_n), "--label", label],
                             env, worker)
            end = sample(worker.pid)
    except RunError as exc:
        say(f"  FAILED: {exc}")
        return {"note": "failed"}
    found = {"n": options.memory_n, "seconds": fed["seconds"], "processes": idle["processes"],
             "pss_idle": idle["pss"], "rss_start": start["rss"], "rss_end": end["rss"],
             "rss_growth": end["rss"] - start["rss"], "main_rss_start": start["main_rss"],
             "main_rss_end": end["main_rss"]}
    say(f"  {label}: idle PSS {found['pss_idle']:.1f} MiB in {found['processes']} processes; RSS "
        f"{found['rss_start']:.1f} -> {found['rss_end']:.1f} MiB over {options.memory_n:,} tasks")
    return found


def sample(pid: int) -> dict:
    """Return the PSS and RSS (MiB) of the session led by ``pid``, and of ``pid`` alone."""
    pss = rss = main_rss = 0
    pids = session_pids(pid)
    for member in pids:
        try:
            member_pss = field_kib((PROC / str(member) / "smaps_rollup").read_text(), "Pss")
            member_rss = field_kib((PROC / str(member) / "status").read_text(), "VmRSS")
        except (FileNotFoundError, ProcessLookupError):  # a child that just exited
            continue
        pss, rss = pss + member_pss, rss + member_rss
        if member == pid:
            main_rss = member_rss
    return {"pss": pss / 1024, "rss": rss / 1024, "main_rss": main_rss / 1024, "processes": len(pids)}


def session_pids(session: int) -> list[int]:
    """Return the processes whose session id is ``session``."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if session_of(stat) == session:
            found.append(int(entry.name))
    return sorted(found)


def session_of(stat: str) -> int:
    """Return the session id in the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may hold spaces and ")", so the
    fields are counted from the last ")": state, ppid, pgrp, session.
    """
    return int(stat[stat.rindex(")") + 1:].split()[3])


def field_kib(text: str, name: str) -> int:
    """Return the ``name:  N kB`` line's N of a /proc status or smaps_rollup text."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    raise ValueError(f"expected a {name!r} line, got {text[:80]!r}")
