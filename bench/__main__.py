"""``python -m bench``: run the suite and print the Markdown table (see bench/README.md)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.brokers import brokers
from bench.database import prepare
from bench.report import chord_table, table
from bench.routing_rules import ROUNDS, rules_case, rules_table
from bench.suite import Options, remove_logs, run_case, say
from bench.systems import SYSTEMS


def parse(argv: list[str]) -> argparse.Namespace:
    known = brokers()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=20_000,
                        help="tasks per enqueue and per drain (default 20000; 0 skips enqueue, "
                             "drain and round trips)")
    parser.add_argument("--latency-n", type=int, default=2_000,
                        help="sequential delay().get() round trips (default 2000; 0 skips)")
    parser.add_argument("--chord", type=int, default=0, metavar="N",
                        help="also time one chord of N header tasks and a summing body "
                             "(default 0: no chord phase)")
    parser.add_argument("--brokers", default=",".join(known),
                        help=f"comma-separated, of {', '.join(known)} (default: all)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, of {', '.join(SYSTEMS)} (default: both)")
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
    if args.n < 0 or args.chord < 0:
        parser.error("--n, --chord: expected 0 or more")
    if not args.n and not args.chord:
        parser.error("nothing to measure: expected --n or --chord above 0")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    known = brokers()
    logs = Path(tempfile.mkdtemp(prefix="djtasks-bench-"))
    options = Options(n=args.n, latency_n=args.latency_n, concurrency=args.concurrency,
                      pool=args.pool, logs=logs, profile=args.profile,
                      profile_idle=args.profile_idle, idle_wait=args.idle_wait, chord=args.chord,
                      events=args.events)
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
    cases = [run_case(SYSTEMS[system], known[broker], options)
             for broker in args.brokers for system in args.systems]
    failed = any("failed" in (case.note, case.chord.get("note")) for case in cases)
    if args.keep_logs or failed:
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
        print(f"\nChord of {args.chord:,} header tasks, pool {args.pool}, concurrency "
              f"{args.concurrency}; {when}\n")
        print(chord_table(cases, titles, system_titles))
    if args.json:
        args.json.write_text(json.dumps([asdict(case) for case in cases], indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
