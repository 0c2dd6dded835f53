"""Sum a py-spy raw profile by process and function: ``python -m bench.profile_summary FILE``.

For the worker's main process and for its pool children (together), prints the share of
samples in which each function is on the stack (inclusive) and at the top (self).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_PROCESS = re.compile(r'^process \d+:"[^"]*"$')
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def split(line: str) -> tuple[str, list[str], int] | None:
    """Return (the process role, the function frames root first, the sample count).

    None for a line that is not a stack: ``--nonblocking`` sampling now and then reads
    memory the process was changing, and py-spy writes what it read.
    """
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not count.isdigit():
        return None
    frames = stack.split(";")
    processes = 0
    while processes < len(frames) and _PROCESS.match(frames[processes]):
        processes += 1
    role = "main" if processes <= 1 else "children"
    return role, [_function(frame) for frame in frames[processes:]], int(count)


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match['name']} ({match['file']})"


def summarize(path: Path, top: int) -> str:
    inclusive: dict[str, Counter] = {"main": Counter(), "children": Counter()}
    own: dict[str, Counter] = {"main": Counter(), "children": Counter()}
    totals: Counter = Counter()
    for line in path.read_text().splitlines():
        parsed = split(line) if line.strip() else None
        if parsed is None:
            continue
        role, frames, count = parsed
        totals[role] += count
        for function in set(frames):
            inclusive[role][function] += count
        if frames:
            own[role][frames[-1]] += count
    out = []
    for role in ("main", "children"):
        total = totals[role] or 1
        out.append(f"## {role}: {totals[role]} samples")
        out.append("inclusive:")
        out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive[role].most_common(top)]
        out.append("self:")
        out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own[role].most_common(top)]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_summary")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    print(summarize(args.file, args.top))


if __name__ == "__main__":
    main(sys.argv[1:])
