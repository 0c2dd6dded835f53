"""The routing-rules case: enqueue with no rules and with N enabled rules, alternately (bench layer).

``python -m bench --routing-rules 50`` runs it instead of the suite, for djtasks only (Celery
has no rules to compare). Each round times the results-off enqueue of N no-ops twice on one
fresh queue: once with the RoutingRule table empty, once with N enabled rules, of which the
last matches the benchmark's tasks and routes them to that same queue. Rounds alternate
which of the two goes first, so that a machine growing busier (or a broker warming up)
hurts both alike; the table shows the median of each.
"""

from __future__ import annotations

import statistics
import uuid

from bench.brokers import Broker
from bench.runner import run_client
from bench.suite import Options, fresh_queue, say, settle
from bench.systems import SYSTEMS

ROUNDS = 7


def rules_case(broker: Broker, options: Options, rules: int) -> dict:
    """Return the median enqueue rates ``{"none", "rules"}`` on ``broker`` and ``"change"``,
    the median of each round's ratio (paired: a busy moment hurts both runs of a round)."""
    system = SYSTEMS["djtasks"]
    down = broker.down()
    if down:
        say(f"  routing rules on {broker.title}: skipped, nothing answers on {', '.join(down)}")
        return {}
    queue = f"bench-djtasks-{broker.key}-rules-{uuid.uuid4().hex[:8]}"
    env = system.env(broker, queue)
    rates: dict[str, list[float]] = {"none": [], "rules": []}
    say(f"== djtasks on {broker.title}: enqueue, results off, without and with {rules} rules")
    with fresh_queue(system, env, queue):
        for number in range(ROUNDS):
            pair = [("none", 0), ("rules", rules)]
            for key, count in pair if number % 2 == 0 else reversed(pair):
                settle(options)
                label = f"djtasks/{broker.key}/{count} rules"
                sent = run_enqueue(env, options.n, count, label)
                rates[key].append(sent["rate"])
                say(f"  {label}: enqueued {options.n:,} at {sent['rate']:,.0f}/s")
    medians = {key: statistics.median(values) for key, values in rates.items()}
    ratios = [with_rules / without for with_rules, without in zip(rates["rules"], rates["none"], strict=True)]
    return {**medians, "change": statistics.median(ratios) - 1}


def run_enqueue(env: dict[str, str], n: int, rules: int, label: str) -> dict:
    return run_client(["djtasks", "enqueue", "--n", str(n), "--label", label, "--ignore-result",
                       "--routing-rules", str(rules)], env)


def rules_table(found: dict[str, dict], titles: dict[str, str], rules: int) -> str:
    """The Markdown table: one row per broker, both rates and their difference."""
    lines = [f"| Broker | Enqueue, results off, no rules (tasks/s) | with {rules} enabled rules "
             "(tasks/s) | difference (median of the rounds' ratios) |", "| --- | ---: | ---: | ---: |"]
    for key, rates in found.items():
        if rates:
            lines.append(f"| {titles[key]} | {rates['none']:,.0f} | {rates['rules']:,.0f} "
                         f"| {rates['change']:+.1%} |")
    return "\n".join(lines)
