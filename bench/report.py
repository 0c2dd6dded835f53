"""The results of a suite and their Markdown table (bench layer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Case:
    """What one system measured on one broker; None where it was not measured."""

    broker: str
    system: str
    enqueue_ignored: float | None = None
    enqueue_stored: float | None = None
    drain_ignored: float | None = None
    drain_stored: float | None = None
    latency: dict[str, float] = field(default_factory=dict)
    note: str = ""  # "n/a", "skipped: ...", "failed"
    busy: bool = False  # the machine was not idle before some measurement of this case
    # The chord phase: n, seconds, rate (header tasks/s), sent (seconds the sending call
    # took), busy; or {"note": "failed"}; empty when it did not run.
    chord: dict = field(default_factory=dict)


HEADER = ("| Broker | System | Enqueue, results off (tasks/s) | Enqueue, results on (tasks/s) "
          "| Drain, results off (tasks/s) | Drain, results on (tasks/s) "
          "| Round trip p50 (ms) | Round trip p99 (ms) |")
CHORD_HEADER = ("| Broker | System | Chord header tasks/s | Chord, first publish to body's value (s) "
                "| of which sending the chord (s) |")


def table(cases: list[Case], titles: dict[str, str], system_titles: dict[str, str]) -> str:
    """Return the Markdown table of ``cases``, one row per broker and system."""
    def cells(case: Case) -> list[str]:
        found = [_rate(case.enqueue_ignored), _rate(case.enqueue_stored),
                 _rate(case.drain_ignored), _rate(case.drain_stored),
                 _ms(case.latency.get("p50")), _ms(case.latency.get("p99"))]
        if case.note and all(cell == "" for cell in found):
            return [case.note] + [""] * 5 if case.note != "n/a" else ["n/a"] * 6
        if case.note:
            found[-1] += f" ({case.note})"
        return found

    return _table(HEADER, cases, titles, system_titles, cells, lambda case: case.busy,
                  "a measurement")


def chord_table(cases: list[Case], titles: dict[str, str], system_titles: dict[str, str]) -> str:
    """Return the Markdown table of the chord phase, one row per broker and system."""
    def cells(case: Case) -> list[str]:
        chord = case.chord
        if "rate" in chord:
            return [_rate(chord["rate"]), f"{chord['seconds']:.2f}", f"{chord['sent']:.2f}"]
        if case.note == "n/a":
            return ["n/a"] * 3
        return [chord.get("note") or (case.note if case.note.startswith("skipped") else ""), "", ""]

    return _table(CHORD_HEADER, cases, titles, system_titles, cells,
                  lambda case: bool(case.chord.get("busy")), "or right after the chord")


def _table(header: str, cases: list[Case], titles: dict[str, str], system_titles: dict[str, str],
           cells: Callable[[Case], list[str]], busy: Callable[[Case], bool], what: str) -> str:
    columns = header.count("|") - 1
    lines = [header, "|" + " --- |" * 2 + " ---: |" * (columns - 2)]
    previous = None
    for case in cases:
        broker = titles[case.broker] if case.broker != previous else ""
        previous = case.broker
        mark = " (busy)" if busy(case) else ""
        lines.append(f"| {broker} | {system_titles[case.system]}{mark} | " + " | ".join(cells(case)) + " |")
    if any(busy(case) for case in cases):
        lines.append(f"\n(busy): other processes kept the CPUs busy before {what} of this row.")
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
