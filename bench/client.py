"""One client step of a run, in a process of its own: ``python -m bench.client SYSTEM STEP``.

The same code measures both systems; only the ``Side`` differs (``bench.djtasks_side`` or
``bench.celery_side``). Progress goes to stderr; the last line of stdout is the outcome,
as JSON, for ``bench.suite`` to read.

Steps:

- ``reset``: empty the queue and the results of earlier runs;
- ``enqueue --n N [--ignore-result] [--task pause]``: publish a stamp, N no-op tasks (timed),
  a stamp; with ``--task pause``, N tasks that sleep 10 ms (results off);
- ``drain --n N --stamps A,B --noops X,Y [--ignore-result]``: wait until stamp B ran;
  the drain rate is (N + 1) / (B's clock - A's clock), both read in the worker;
- ``latency --n M``: M sequential ``noop.delay().get()`` round trips, after a warm-up;
- ``chord --n N``: one round trip (untimed), then ``chord(N x number.s(i))(total.s())``
  timed from the call that sends it until the body's value is read; checks the sum;
- ``feed --n N``: publish N no-ops (results off) and a stamp to a running worker; wait
  until the stamp ran (the memory row);
- ``fill --results R --messages M``: djtasks only, add R finished results and M messages
  waiting on another queue to the PostgreSQL tables (the cost-growth row);
- ``cleanup``: purge and delete the queue, delete the results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any

PROGRESS_EVERY = 3.0  # seconds between progress lines
POLL = 0.2  # seconds between looks at the closing stamp while a drain runs
STALL = 120.0  # a drain whose queue does not move for this long has failed
WARMUP = 20
SETTLE = 30.0  # seconds the broker may take to count every published message
ROUNDTRIP_TIMEOUT = 30.0


class Progress:
    """Print a line to stderr at most every PROGRESS_EVERY seconds."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= PROGRESS_EVERY

    def show(self, text: str) -> None:
        self.last = time.monotonic()
        print(f"    {self.label}: {text} ({self.last - self.started:.0f} s)", file=sys.stderr, flush=True)


def enqueue(side: Any, n: int, ignore_result: bool, label: str, routing_rules: int = 0,
            task: str = "noop") -> dict:
    """Publish stamp, N no-ops (or with ``task="pause"`` N 10 ms sleeps), stamp; time the N
    publishes alone.

    ``routing_rules`` enabled RoutingRule rows (none by default) route the tasks meanwhile.
    """
    side.purge()
    side.install_routing_rules(routing_rules)
    send = side.send_pause if task == "pause" else lambda: side.send_noop(ignore_result)
    first_stamp = side.send_stamp()  # also connects: connecting is not publishing
    progress = Progress(f"{label} enqueue")
    started = time.perf_counter()
    first_noop = last_noop = send()
    for i in range(1, n):
        last_noop = send()
        if i % 256 == 0 and progress.due():
            progress.show(f"{i:,}/{n:,} published, {i / (time.perf_counter() - started):,.0f}/s")
    seconds = time.perf_counter() - started
    last_stamp = side.send_stamp()
    # RabbitMQ counts a message some time after the (unconfirmed) publish returned.
    deadline = time.monotonic() + SETTLE
    while (queued := side.queue_size()) != n + 2:
        if queued > n + 2 or time.monotonic() > deadline:
            raise SystemExit(f"expected {n + 2} messages in the queue, found {queued}")
        time.sleep(0.1)
    return {"seconds": seconds, "rate": n / seconds, "stamps": [first_stamp, last_stamp],
            "noops": [first_noop, last_noop]}


def drain(side: Any, n: int, stamps: list[str], noops: list[str], ignore_result: bool,
          label: str) -> dict:
    """Wait for the closing stamp; check what the no-ops stored; return the worker-side rate."""
    wait_for_stamp(side, stamps[1], Progress(f"{label} drain"))
    started, finished = side.value(stamps[0]), side.value(stamps[1])
    expected = "PENDING" if ignore_result else "SUCCESS"
    found = [side.state(task_id) for task_id in noops]
    if found != [expected, expected]:
        raise SystemExit(f"expected the first and last no-op {expected}, found {found}")
    return {"seconds": finished - started, "rate": (n + 1) / (finished - started)}


def wait_for_stamp(side: Any, stamp: str, progress: Progress) -> None:
    """Return once ``stamp`` has run; fail when the queue stops moving for STALL seconds."""
    moved_at, last_size = time.monotonic(), None
    while side.state(stamp) != "SUCCESS":
        if progress.due():
            size = side.queue_size()
            progress.show(f"{size:,} waiting in the queue")
            if size != last_size:
                moved_at, last_size = time.monotonic(), size
            elif time.monotonic() - moved_at > STALL:
                raise SystemExit(f"the queue stayed at {size} for {STALL:.0f} s")
        time.sleep(POLL)


def feed(side: Any, n: int, label: str) -> dict:
    """Publish N no-ops (results off) and a stamp to a running worker; wait for the stamp."""
    progress = Progress(f"{label} feed")
    started = time.perf_counter()
    for i in range(n):
        side.send_noop(True)
        if i % 256 == 0 and progress.due():
            progress.show(f"{i:,}/{n:,} published")
    wait_for_stamp(side, side.send_stamp(), progress)
    seconds = time.perf_counter() - started
    return {"n": n, "seconds": seconds}


def latency(side: Any, n: int, label: str) -> dict:
    """Time N sequential round trips against an idle worker; milliseconds."""
    for _ in range(WARMUP):
        side.roundtrip(ROUNDTRIP_TIMEOUT)
    progress = Progress(f"{label} latency")
    samples = []
    for i in range(n):
        started = time.perf_counter()
        side.roundtrip(ROUNDTRIP_TIMEOUT)
        samples.append((time.perf_counter() - started) * 1000)
        if progress.due():
            progress.show(f"{i + 1:,}/{n:,} round trips")
    samples.sort()
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99),
            "mean": sum(samples) / n, "max": samples[-1]}


def chord(side: Any, n: int, label: str) -> dict:
    """Send one chord of N header tasks and a summing body; time it until its value is read."""
    side.purge()
    side.roundtrip(ROUNDTRIP_TIMEOUT)  # connects to the broker and the results, untimed
    header = side.chord_header(n)
    progress = Progress(f"{label} chord")
    started = time.perf_counter()
    result = side.send_chord(header)
    sent = time.perf_counter() - started
    moved_at, last_size = time.monotonic(), None
    while True:
        try:
            value = side.wait(result, PROGRESS_EVERY)
            break
        except TimeoutError:
            size = side.queue_size()
            progress.show(f"{size:,} waiting in the queue")
            if size != last_size:
                moved_at, last_size = time.monotonic(), size
            elif time.monotonic() - moved_at > STALL:
                raise SystemExit(f"no chord result, and the queue stayed at {size} for {STALL:.0f} s") \
                    from None
    seconds = time.perf_counter() - started
    expected = n * (n - 1) // 2
    if value != expected:
        raise SystemExit(f"chord of {n}: expected the body to return {expected}, got {value!r}")
    return {"n": n, "seconds": seconds, "rate": n / seconds, "sent": sent}


def percentile(ordered: list[float], p: float) -> float:
    """Return the nearest-rank ``p``-th percentile of an ascending list."""
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def cleanup(side: Any) -> dict:
    side.purge()
    side.delete_queue()
    side.reset_results()
    return {}


def reset(side: Any) -> dict:
    side.purge()
    side.reset_results()
    return {}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("system", choices=["djtasks", "celery"])
    parser.add_argument("step", choices=["reset", "enqueue", "drain", "latency", "chord", "feed", "fill",
                                         "cleanup"])
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--ignore-result", action="store_true")
    parser.add_argument("--stamps", default="")
    parser.add_argument("--noops", default="")
    parser.add_argument("--label", default="")
    parser.add_argument("--routing-rules", type=int, default=0)
    parser.add_argument("--task", choices=["noop", "pause"], default="noop")
    parser.add_argument("--results", type=int, default=0)
    parser.add_argument("--messages", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    side = importlib.import_module(f"bench.{args.system}_side").Side()
    label = args.label or args.system
    try:
        if args.step == "enqueue":
            outcome = enqueue(side, args.n, args.ignore_result, label, args.routing_rules, args.task)
        elif args.step == "drain":
            outcome = drain(side, args.n, args.stamps.split(","), args.noops.split(","),
                            args.ignore_result, label)
        elif args.step == "latency":
            outcome = latency(side, args.n, label)
        elif args.step == "chord":
            outcome = chord(side, args.n, label)
        elif args.step == "feed":
            outcome = feed(side, args.n, label)
        elif args.step == "fill":
            side.fill(args.results, args.messages)
            outcome = {}
        else:
            outcome = {"reset": reset, "cleanup": cleanup}[args.step](side)
    finally:
        side.close()
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
