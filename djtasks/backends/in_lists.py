"""Long ``IN (...)`` lists, split into statements every database accepts (storage layer).

A default SQLite build takes at most 32,766 host parameters in one statement, so a chord
of 40,000 members could not read its results in one query there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Ids per statement: well under SQLite's limit, with room for the statement's other
#: parameters, and few statements for the largest chords.
IN_LIST_SIZE = 10_000


def in_batches(ids: Iterable[T], size: int = IN_LIST_SIZE) -> Iterator[Sequence[T]]:
    """Yield ``ids`` in consecutive slices of at most ``size``, in their order."""
    items = ids if isinstance(ids, Sequence) else list(ids)
    for start in range(0, len(items), size):
        yield items[start:start + size]
