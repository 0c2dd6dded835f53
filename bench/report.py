"""The results of a suite and their Markdown table (bench layer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field


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
    # The chord phases, one per ``--chord`` size in order: n, seconds, rate (header tasks/s),
    # sent (seconds the sending call took), busy; or {"n": n, "note": "failed"}.
    chords: list[dict] = field(default_factory=list)
    # The threads-pool row: n, concurrency, enqueue and drain (tasks/s), busy; or {"note": ...}.
    threads: dict = field(default_factory=dict)
    # The memory row: pss_idle, rss_start, rss_end, rss_growth, main_rss_start, main_rss_end
    # (MiB), processes, n, busy; or {"note": ...}.
    memory: dict = field(default_factory=dict)
    # The cost-growth row (djtasks on django:// PostgreSQL): results, messages, then per state
    # "empty" and "filled" the four rates (enqueue/drain, results off/on); "ratio_off",
    # "ratio_on": filled drain / empty drain.
    growth: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        """Every field, and ``chord``: the first chord size, where runs before lists put it."""
        return {**asdict(self), "chord": self.chords[0] if self.chords else {}}


HEADER = ("| Broker | System | Enqueue, results off (tasks/s) | Enqueue, results on (tasks/s) "
          "| Drain, results off (tasks/s) | Drain, results on (tasks/s) "
          "| Round trip p50 (ms) | Round trip p99 (ms) |")
CHORD_HEADER = ("| Broker | System | Header tasks | Chord header tasks/s "
                "| Chord, first publish to body's value (s) | of which sending the chord (s) |")
THREADS_HEADER = ("| Broker | System | Enqueue, 10 ms sleeps (tasks/s) "
                  "| Drain, threads pool (tasks/s) |")
MEMORY_HEADER = ("| Broker | System | Idle PSS, main + children (MiB) | RSS after warm-up (MiB) "
                 "| RSS after the run (MiB) | RSS growth (MiB) | of which the main process (MiB) |")
GROWTH_HEADER = ("| Tables | Enqueue, results off (tasks/s) | Enqueue, results on (tasks/s) "
                 "| Drain, results off (tasks/s) | Drain, results on (tasks/s) |")


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


def chord_table(cases: list[Case], titles: dict[str, str], system_titles: dict[str, str],
                sizes: list[int]) -> str:
    """Return the Markdown table of the chord phases, one row per broker, system and size."""
    # A system without the broker ("n/a") gets one row, not one per size.
    rows = [(case, size, _chord_of(case, size)) for case in cases
            for size in (sizes[:1] if case.note == "n/a" else sizes)]

    def cells(row: tuple[Case, int, dict]) -> list[str]:
        case, size, chord = row
        if "rate" in chord:
            return [f"{size:,}", _rate(chord["rate"]), f"{chord['seconds']:.2f}", f"{chord['sent']:.2f}"]
        return ["n/a" if case.note == "n/a" else f"{size:,}", *_missing(case, chord, 3)]

    return _rows_table(CHORD_HEADER, rows, titles, system_titles, cells,
                       lambda row: bool(row[2].get("busy")), "or right after the chord")


def threads_table(cases: list[Case], titles: dict[str, str], system_titles: dict[str, str]) -> str:
    """Return the Markdown table of the threads-pool row, one row per broker and system."""
    def cells(case: Case) -> list[str]:
        if "drain" in case.threads:
            return [_rate(case.threads["enqueue"]), _rate(case.threads["drain"])]
        return _missing(case, case.threads, 2)

    return _table(THREADS_HEADER, cases, titles, system_titles, cells,
                  lambda case: bool(case.threads.get("busy")), "a measurement")


def memory_table(cases: list[Case], titles: dict[str, str], system_titles: dict[str, str]) -> str:
    """Return the Markdown table of the memory row, one row per broker and system."""
    def cells(case: Case) -> list[str]:
        found = case.memory
        if "pss_idle" not in found:
            return _missing(case, found, 5)
        main = found["main_rss_end"] - found["main_rss_start"]
        return [_mib(found["pss_idle"]), _mib(found["rss_start"]), _mib(found["rss_end"]),
                f"{found['rss_growth']:+.1f}", f"{main:+.1f}"]

    return _table(MEMORY_HEADER, cases, titles, system_titles, cells,
                  lambda case: bool(case.memory.get("busy")), "a measurement")


def growth_table(growth: dict) -> str:
    """Return the Markdown table of the cost-growth row: empty tables, filled, and the ratio."""
    lines = [GROWTH_HEADER, "| --- |" + " ---: |" * 4]
    keys = ("enqueue_ignored", "enqueue_stored", "drain_ignored", "drain_stored")
    filled = f"{growth['results']:,} finished results, {growth['messages']:,} waiting messages"
    for title, state in (("empty", "empty"), (filled, "filled")):
        rates = growth.get(state, {})
        mark = " (busy)" if rates.get("busy") else ""
        lines.append(f"| {title}{mark} | " + " | ".join(_rate(rates.get(key)) for key in keys) + " |")
    ratios = ["" if ratio is None else f"{ratio:.2f}"
              for ratio in (growth.get("ratio_off"), growth.get("ratio_on"))]
    lines.append("| drain, filled / empty | | | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def _chord_of(case: Case, size: int) -> dict:
    return next((chord for chord in case.chords if chord.get("n") == size), {})


def _missing(case: Case, found: dict, columns: int) -> list[str]:
    """The cells of a row that has no numbers: "n/a", the case's skip note, or the row's own."""
    if case.note == "n/a" or found.get("note") == "n/a":
        return ["n/a"] * columns
    note = found.get("note") or (case.note if case.note.startswith("skipped") else "")
    return [note] + [""] * (columns - 1)


def _table(header: str, cases: list[Case], titles: dict[str, str], system_titles: dict[str, str],
           cells: Callable[[Case], list[str]], busy: Callable[[Case], bool], what: str) -> str:
    return _rows_table(header, [(case,) for case in cases], titles, system_titles,
                       lambda row: cells(row[0]), lambda row: busy(row[0]), what)


def _rows_table(header: str, rows: list, titles: dict[str, str], system_titles: dict[str, str],
                cells: Callable, busy: Callable, what: str) -> str:
    """The table of ``rows``, tuples whose first item is their Case: broker, system, cells."""
    columns = header.count("|") - 1
    lines = [header, "|" + " --- |" * 2 + " ---: |" * (columns - 2)]
    previous = None
    for row in rows:
        case = row[0]
        broker = titles[case.broker] if case.broker != previous else ""
        previous = case.broker
        mark = " (busy)" if busy(row) else ""
        lines.append(f"| {broker} | {system_titles[case.system]}{mark} | " + " | ".join(cells(row)) + " |")
    if any(busy(row) for row in rows):
        lines.append(f"\n(busy): other processes kept the CPUs busy before {what} of this row.")
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _mib(value: float) -> str:
    return f"{value:.1f}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
