"""The cost-growth row: django:// on PostgreSQL with full tables against empty ones (bench layer).

``--growth`` runs djtasks' results-off and results-on phases twice on the PostgreSQL
broker: once with empty tables (as every other row) and once after adding finished
results and messages waiting on another queue (``bench.djtasks_side.Side.fill``). Each
phase's cleanup empties the tables again.
"""

from __future__ import annotations

from bench.brokers import Broker
from bench.runner import RunError
from bench.suite import Options, Run, phase, say
from bench.systems import System


def growth_case(system: System, broker: Broker, options: Options) -> dict:
    """Return the four rates with empty and with filled tables, and the drains' ratios."""
    assert options.growth is not None
    results, messages = options.growth
    found: dict = {"results": results, "messages": messages}
    try:
        for state, fill in (("empty", None), ("filled", options.growth)):
            rates: dict = {"busy": False}
            for key, ignore_result in (("ignored", True), ("stored", False)):
                name = f"growth-{state}-{'off' if ignore_result else 'on'}"
                outcome = phase(system, broker, options, Run(name, options.n, ignore_result, fill=fill))
                rates.update({f"enqueue_{key}": outcome["enqueue"], f"drain_{key}": outcome["drain"]})
                rates["busy"] = rates["busy"] or outcome["busy"]
            found[state] = rates
    except RunError as exc:
        say(f"  FAILED: {exc}")
        return {**found, "note": "failed"}
    found["ratio_off"] = found["filled"]["drain_ignored"] / found["empty"]["drain_ignored"]
    found["ratio_on"] = found["filled"]["drain_stored"] / found["empty"]["drain_stored"]
    say(f"  djtasks/{broker.key}/growth: drain filled/empty {found['ratio_off']:.2f} (results off), "
        f"{found['ratio_on']:.2f} (results on)")
    return found
