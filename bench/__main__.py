"""``python -m bench``: run the suite and print the Markdown table (see bench/README.md)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.brokers import brokers
from bench.database import prepare
from bench.growth import growth_case
from bench.memory import memory_phase
from bench.report import Case, chord_table, growth_table, memory_table, table, threads_table
from bench.routing_rules import ROUNDS, rules_case, rules_table
from bench.suite import Options, remove_logs, run_case, say
from bench.systems import DEFAULT_SYSTEMS, SYSTEMS


def sizes(text: str) -> tuple[int, ...]:
    """Parse ``--chord``: "1000,10000" -> (1000, 10000); "0" or "" -> () (no chord phase)."""
    try:
        found = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes such as 1000,10000, got {text!r}") from None
    if any(size < 0 for size in found):
        raise argparse.ArgumentTypeError(f"expected sizes of 0 or more, got {text!r}")
    return tuple(size for size in found if size)


def parse(argv: list[str]) -> argparse.Namespace:
    known = brokers()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000,
                        help="tasks per enqueue and per drain (default 20000; 0 skips enqueue, "
                             "drain and round trips)")
    parser.add_argument("--latency-n", type=int, default=2_000,
                        help="sequential delay().get() round trips (default 2000; 0 skips)")
    parser.add_argument("--chord", type=sizes, default=(), metavar="N[,M...]",
                        help="also time one chord of N header tasks and a summing body, for each "
                             "size given (default: no chord phase)")
    parser.add_argument("--threads-n", type=int, default=0, metavar="N",
                        help="also drain N tasks that sleep 10 ms with -P threads (default 0: no)")
    parser.add_argument("--threads-c", type=int, default=8, metavar="C",
                        help="concurrency of the threads-pool row (default 8)")
    parser.add_argument("--memory-n", type=int, default=0, metavar="N",
                        help="also sample an idle worker's PSS and its RSS over N tasks (default 0: no)")
    parser.add_argument("--growth", action="store_true",
                        help="also drain djtasks on django:// PostgreSQL with full tables")
    parser.add_argument("--growth-results", type=int, default=1_000_000, metavar="R",
                        help="finished results in the tables for --growth (default 1000000)")
    parser.add_argument("--growth-messages", type=int, default=100_000, metavar="M",
                        help="messages waiting on another queue for --growth (default 100000)")
    parser.add_argument("--brokers", default=",".join(known),
                        help=f"comma-separated, of {', '.join(known)} (default: all)")
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated, of {', '.join(SYSTEMS)} "
                             f"(default: {','.join(DEFAULT_SYSTEMS)})")
    parser.add_argument("-c", "--concurrency", type=int, default=2, help="pool size of both workers")
    parser.add_argument("-P", "--pool", default="prefork", choices=["prefork", "threads", "solo"])
    parser.add_argument("--idle-wait", type=float, default=120.0, metavar="SECONDS",
                        help="before each measurement, wait up to this long for the CPUs to be "
                             "under 15%% busy (default 120; 0: do not wait)")
    parser.add_argument("--events", action="store_true",
                        help="both workers send task events (-E); run once with and once "
                             "without to see what events cost")
    parser.add_argument("--routing-rules", type=int, default=0, metavar="N",
                        help="instead of the suite: djtasks' results-off enqueue without and with "
                             "N enabled routing rules, alternately, on each broker")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' log files")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="sample each worker with py-spy during drains, into DIR (slows it)")
    parser.add_argument("--profile-idle", action="store_true",
                        help="with --profile: also sample waiting threads (wall time, not CPU)")
    args = parser.parse_args(argv)
    for key, valid in (("brokers", known), ("systems", SYSTEMS)):
        chosen = [item.strip() for item in getattr(args, key).split(",") if item.strip()]
        unknown = [item for item in chosen if item not in valid]
        if unknown or not chosen:
            parser.error(f"--{key}: expected some of {', '.join(valid)}, got {getattr(args, key)!r}")
        setattr(args, key, chosen)
    if min(args.n, args.threads_n, args.memory_n, args.growth_results, args.growth_messages) < 0:
        parser.error("--n, --threads-n, --memory-n, --growth-*: expected 0 or more")
    if not (args.n or args.chord or args.threads_n or args.memory_n):
        parser.error("nothing to measure: expected --n, --chord, --threads-n or --memory-n above 0")
    if args.growth and not (args.n and "postgres" in args.brokers and "djtasks" in args.systems):
        parser.error("--growth: expected --n above 0, postgres in --brokers, djtasks in --systems")
    return args


def measure(system: str, broker: str, options: Options) -> Case:
    """Run a case, then its memory and cost-growth rows where they were asked for."""
    case = run_case(SYSTEMS[system], brokers()[broker], options)
    if case.note not in ("", "failed"):  # n/a or skipped: nothing to start a worker on
        return case
    if options.memory_n:
        case.memory = memory_phase(SYSTEMS[system], brokers()[broker], options)
    if options.growth and (system, broker) == ("djtasks", "postgres"):
        case.growth = growth_case(SYSTEMS[system], brokers()[broker], options)
    return case


def failed(case: Case) -> bool:
    rows = [case.threads, case.memory, case.growth, *case.chords]
    return case.note == "failed" or any(row.get("note") == "failed" for row in rows)


def main(argv: list[str]) -> int:
    args = parse(argv)
    known = brokers()
    logs = Path(tempfile.mkdtemp(prefix="djtasks-bench-"))
    options = Options(n=args.n, latency_n=args.latency_n, concurrency=args.concurrency,
                      pool=args.pool, logs=logs, profile=args.profile,
                      profile_idle=args.profile_idle, idle_wait=args.idle_wait, chords=args.chord,
                      events=args.events, threads_n=args.threads_n, threads_concurrency=args.threads_c,
                      memory_n=args.memory_n,
                      growth=(args.growth_results, args.growth_messages) if args.growth else None)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    prepare()
    if args.routing_rules:
        found = {broker: rules_case(known[broker], options, args.routing_rules)
                 for broker in args.brokers}
        print(f"\nN={args.n:,}, median of {ROUNDS} alternating rounds; "
              f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}\n")
        print(rules_table(found, {key: b.title for key, b in known.items()}, args.routing_rules))
        return 0
    cases = [measure(system, broker, options) for broker in args.brokers for system in args.systems]
    any_failed = any(failed(case) for case in cases)
    if args.keep_logs or any_failed:
        say(f"worker logs: {logs}")
    else:
        remove_logs(logs)
    say(f"finished in {time.monotonic() - started:.0f} s")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    titles = {key: b.title for key, b in known.items()}
    system_titles = {key: s.title for key, s in SYSTEMS.items()}
    if args.n:
        print(f"\nN={args.n:,}, {args.latency_n:,} round trips, pool {args.pool}, concurrency "
              f"{args.concurrency}; {when}\n")
        print(table(cases, titles, system_titles))
    if args.chord:
        print(f"\nChords, pool {args.pool}, concurrency {args.concurrency}; {when}\n")
        print(chord_table(cases, titles, system_titles, list(args.chord)))
    if args.threads_n:
        print(f"\nThreads pool: {args.threads_n:,} tasks that sleep 10 ms, -P threads -c {args.threads_c}, "
              f"results off; {when}\n")
        print(threads_table(cases, titles, system_titles))
    if args.memory_n:
        print(f"\nMemory: pool {args.pool}, concurrency {args.concurrency}; idle, then RSS after "
              f"a warm-up and after {args.memory_n:,} tasks; {when}\n")
        print(memory_table(cases, titles, system_titles))
    growth = next((case.growth for case in cases if case.growth), None)
    if growth:
        print(f"\nCost growth: djtasks on django:// PostgreSQL, N={args.n:,}; {when}\n")
        print(growth_table(growth))
    if args.json:
        args.json.write_text(json.dumps([case.as_json() for case in cases], indent=2))
    return 1 if any_failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
