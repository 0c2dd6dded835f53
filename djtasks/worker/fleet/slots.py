"""RunningSlots: what each consuming child runs, in memory the parent can read (processes layer).

A child that consumes from the broker itself tells its parent nothing per task over a pipe;
it writes the Request it is about to run into its slot of one shared anonymous mapping, and
clears the slot when the task returns. The parent reads a slot only when it must act for the
child: its hard time limit is due, it is to be terminated, or it died. So a task costs the
child one pickle and a memory copy, and the parent nothing.

A slot: a sequence number (odd while the child writes), the hard deadline (time.time(), 0
for none), the pickle's length, then the pickle. A reader that sees the number change or
odd reads again: the child never waits for the parent.
"""

from __future__ import annotations

import mmap
import pickle
import struct
import time
from dataclasses import dataclass
from typing import Any

from djtasks.worker.pools.timelimits import TimeLimits

_HEADER = struct.Struct("=Qdd I")  # sequence, hard deadline, started, pickle length
_COUNTERS = struct.Struct("=QQ")  # tasks finished, of which failed: the heartbeat's counts
#: Room for a Request's pickle; a bigger one (huge arguments) keeps its id and name only.
SLOT_SIZE = 64 * 1024


@dataclass(frozen=True)
class Running:
    """What a slot says its child runs."""

    request: Any  # the Request, or a LostRequest with only its id and name
    started: float
    hard_deadline: float | None
    delivery_tag: Any = None  # its message's, on the child's channel


@dataclass(frozen=True)
class LostRequest:
    """What is left of a Request too big for its slot: enough to name and fail the task."""

    task_id: str
    name: str


class RunningSlots:
    """One slot per child index, in a mapping made before the fork and shared by it."""

    def __init__(self, count: int) -> None:
        self.count = count
        # Anonymous and shared, so fork keeps it; untouched pages of it cost no memory.
        self._map = mmap.mmap(-1, SLOT_SIZE * count)
        self._counters = mmap.mmap(-1, _COUNTERS.size * count)

    def close(self) -> None:
        self._map.close()
        self._counters.close()

    # -- in the child --------------------------------------------------------------
    def write(self, index: int, request: Any, delivery_tag: Any = None) -> None:
        """Say that child ``index`` starts ``request`` (its message's tag) now."""
        now = time.time()
        hard = TimeLimits.of(request).hard
        data = pickle.dumps((request, delivery_tag), pickle.HIGHEST_PROTOCOL)
        if len(data) > SLOT_SIZE - _HEADER.size:
            data = pickle.dumps((LostRequest(request.message.id, request.message.task),
                                 delivery_tag))
        base = index * SLOT_SIZE
        sequence = self._sequence(index) + 1  # odd: being written
        self._map[base:base + 8] = struct.pack("=Q", sequence)
        end = base + _HEADER.size + len(data)
        self._map[base + _HEADER.size:end] = data
        self._map[base:base + _HEADER.size] = _HEADER.pack(
            sequence + 1, now + hard if hard else 0.0, now, len(data))

    def clear(self, index: int) -> None:
        """Say that child ``index`` runs nothing."""
        base = index * SLOT_SIZE
        self._map[base:base + _HEADER.size] = _HEADER.pack(self._sequence(index) + 2, 0.0, 0.0, 0)

    def set_counts(self, index: int, processed: int, failed: int) -> None:
        """Say how many tasks child ``index`` finished, and how many of them failed."""
        _COUNTERS.pack_into(self._counters, index * _COUNTERS.size, processed, failed)

    # -- in the parent -------------------------------------------------------------
    def counts(self, index: int) -> tuple[int, int]:
        """(finished, failed) of child ``index``, as it last said."""
        processed, failed = _COUNTERS.unpack_from(self._counters, index * _COUNTERS.size)
        return int(processed), int(failed)

    def read(self, index: int) -> Running | None:
        """What child ``index`` runs now, or None; never torn by a write in progress."""
        base = index * SLOT_SIZE
        for _attempt in range(100):
            sequence, deadline, started, length = _HEADER.unpack_from(self._map, base)
            if sequence % 2:
                time.sleep(0.0001)
                continue
            data = self._map[base + _HEADER.size:base + _HEADER.size + length] if length else b""
            if _HEADER.unpack_from(self._map, base)[0] != sequence:
                continue
            if not data:
                return None
            request, tag = pickle.loads(data)  # noqa: S301 - our child wrote it
            return Running(request, started, deadline or None, tag)
        return None  # a child rewriting its slot this fast is alive and well: nothing to act on

    def busy(self, index: int) -> bool:
        """Whether child ``index`` runs a task now (cheap: no unpickling)."""
        return bool(_HEADER.unpack_from(self._map, index * SLOT_SIZE)[3])

    def hard_deadline(self, index: int) -> float | None:
        """The hard deadline of child ``index``'s task (cheap: no unpickling)."""
        _sequence, deadline, _started, length = _HEADER.unpack_from(self._map, index * SLOT_SIZE)
        return deadline if length and deadline else None

    def reset(self, index: int) -> None:
        """Empty slot ``index`` for a new child (its old one died mid-write, maybe)."""
        base = index * SLOT_SIZE
        self._map[base:base + _HEADER.size] = _HEADER.pack(0, 0.0, 0.0, 0)
        self.set_counts(index, 0, 0)

    def _sequence(self, index: int) -> int:
        return int(_HEADER.unpack_from(self._map, index * SLOT_SIZE)[0])
