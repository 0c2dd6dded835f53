"""SharedBuckets: one rate-limit bucket per task for all of a fleet's children (processes layer).

A rate limit is per worker, as in Celery. When each child of a fleet consumes on its own, a
bucket per child would let N tasks of a limited name start together, one per child. So the
children share each bucket: per task name, the monotonic time at which its next start is
allowed, in a table of memory made before the fork.

A bucket of capacity 1 (the worker's choice) is exactly that time: a start is allowed once
``now`` has reached it, and taking the token moves it to ``now + 1 / rate``.

The table is guarded by a POSIX record lock (``lockf``) on the file that backs it, not by a
semaphore: the kernel drops a record lock with the process that held it, so a child killed
mid-take never leaves its siblings waiting for ever. Such a lock is per process, which is
enough: in a child only its consumer thread takes tokens.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import time
from collections.abc import Callable

from djtasks.utils.rates import EPSILON, TokenBucket

logger = logging.getLogger("djtasks.worker")

_ENTRY = struct.Struct("=Qd")  # the name's hash (0: a free entry), its next allowed start
#: Rate-limited task names one fleet can hold; a name past them gets a bucket per child.
CAPACITY = 1024


def _name_key(name: str) -> int:
    # 64 bits of a hash that is the same in every process (str.__hash__ is salted per
    # process, but children inherit the salt; this does not depend on that). Never 0.
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") or 1


class SharedBuckets:
    """The fleet's table of next allowed starts, one entry per rate-limited task name."""

    def __init__(self, children: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.children = children  # for the fallback: a child's share of a rate
        self.clock = clock  # CLOCK_MONOTONIC: one clock for every process of the machine
        # A file in memory, never on disk; lives as long as the fleet's processes.
        self._fd = os.memfd_create("djtasks-rates")
        os.ftruncate(self._fd, _ENTRY.size * CAPACITY)
        self._map = mmap.mmap(self._fd, _ENTRY.size * CAPACITY)

    def bucket(self, name: str, rate: float) -> SharedBucket | TokenBucket:
        """Return task ``name``'s bucket at ``rate`` tasks per second for the whole worker."""
        with self._locked():
            index = self._find(_name_key(name))
        if index is None:
            logger.warning("rate_limit %s: more than %d rate-limited tasks in this worker; its "
                           "children each take 1/%d of this one's rate", name, CAPACITY,
                           self.children)
            return TokenBucket(rate / self.children, clock=self.clock)
        return SharedBucket(self, index, rate)

    def take(self, index: int, interval: float) -> bool:
        with self._locked():
            key, next_start = _ENTRY.unpack_from(self._map, index * _ENTRY.size)
            now = self.clock()
            if now + EPSILON < next_start:
                return False
            _ENTRY.pack_into(self._map, index * _ENTRY.size, key, now + interval)
            return True

    def wait_time(self, index: int) -> float:
        # Read without the lock: a stale read only makes the consumer look once more.
        _key, next_start = _ENTRY.unpack_from(self._map, index * _ENTRY.size)
        return max(0.0, next_start - self.clock())

    def _find(self, key: int) -> int | None:
        # Open addressing: the name's own entry, else the first free one after its home,
        # claimed (under the lock) with a next start of 0.0: a full bucket, as at a start.
        home = key % CAPACITY
        for step in range(CAPACITY):
            index = (home + step) % CAPACITY
            found, _next_start = _ENTRY.unpack_from(self._map, index * _ENTRY.size)
            if found == key:
                return index
            if found == 0:
                _ENTRY.pack_into(self._map, index * _ENTRY.size, key, 0.0)
                return index
        return None

    def _locked(self) -> _RecordLock:
        return _RecordLock(self._fd)


class _RecordLock:
    """``with``: hold the record lock on the whole of ``fd``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)


class SharedBucket:
    """A TokenBucket of capacity 1 whose one token all of a fleet's children take from."""

    def __init__(self, table: SharedBuckets, index: int, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"token bucket: expected a positive rate, got {rate!r}")
        self.table = table
        self.index = index
        self.rate = rate

    def take(self) -> bool:
        """Take the token if it is there (True); otherwise take nothing (False)."""
        return self.table.take(self.index, 1.0 / self.rate)

    def wait_time(self) -> float:
        """Return the seconds until the token can be taken (0 when it can be now)."""
        return self.table.wait_time(self.index)
