"""The result graph around one TaskResult, as links for its detail page (edge layer).

A result knows its parent, its root, the tasks it started (``children``), its group, and,
when it was sent again from the console, the result it retries (``retry_of``); the rows
that retry it point back at it. Each id becomes a link to that result's admin page, or is
marked "not stored" when no row holds it (expired, forgotten, never stored, or another
process's ignore_result). Every list is read in one query and shown up to LINKS_SHOWN long,
so a chord of 10,000 tasks costs the page no more than one of ten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from djtasks.models import ChordCounter, GroupResult, TaskResult

#: The most links one list of the graph shows; the rest are counted.
LINKS_SHOWN = 100


@dataclass(frozen=True)
class ResultLink:
    """One task id of the graph: its result's page and state, or ``url`` None if not stored."""

    task_id: str
    url: str | None = None
    status: str = ""


@dataclass(frozen=True)
class LinkList:
    """Links in order, at most LINKS_SHOWN, and how many more ids there were."""

    links: tuple[ResultLink, ...] = ()
    more: int = 0

    def __bool__(self) -> bool:
        return bool(self.links)


@dataclass(frozen=True)
class Chord:
    """The chord a group belongs to: its body and how many header tasks are still to finish."""

    body: ResultLink | None
    remaining: int
    total: int


@dataclass(frozen=True)
class ResultGraph:
    """Everything the detail page links to from one result."""

    parent: ResultLink | None = None
    root: ResultLink | None = None
    children: LinkList = field(default_factory=LinkList)
    group_id: str = ""
    group: LinkList = field(default_factory=LinkList)
    chord: Chord | None = None
    retry_of: ResultLink | None = None
    retried_as: LinkList = field(default_factory=LinkList)


def read_graph(row: TaskResult, url_of: Callable[[int], str]) -> ResultGraph:
    """Return the graph around ``row``; ``url_of(pk)`` is the admin page of a stored result."""
    rows = TaskResult.objects.using(row._state.db or "default")
    links = _Linker(rows, url_of)
    group_ids, chord = _group_members(row), None
    if row.group_id:
        chord = _chord(row, links)
    retried = _ids_of(rows.filter(retry_of=row.task_id)) if row.task_id else ([], 0)
    return ResultGraph(
        parent=links.one(row.parent_id),
        root=links.one(row.root_id) if row.root_id != row.task_id else None,
        children=links.many(row.children or []),
        group_id=row.group_id,
        group=links.many(*group_ids),
        chord=chord,
        retry_of=links.one(row.retry_of),
        retried_as=links.many(*retried),
    )


class _Linker:
    def __init__(self, rows: Any, url_of: Callable[[int], str]) -> None:
        self.rows = rows
        self.url_of = url_of

    def one(self, task_id: str | None) -> ResultLink | None:
        if not task_id:
            return None
        return self.many([task_id]).links[0]

    def many(self, task_ids: Sequence[Any], total: int | None = None) -> LinkList:
        """Link the first LINKS_SHOWN of ``task_ids`` (of ``total``, when that is more)."""
        shown = [str(task_id) for task_id in task_ids[:LINKS_SHOWN]]
        stored = {task_id: (pk, status) for task_id, pk, status in
                  self.rows.filter(task_id__in=shown).values_list("task_id", "pk", "status")}
        links = tuple(ResultLink(task_id, self.url_of(stored[task_id][0]), stored[task_id][1])
                      if task_id in stored else ResultLink(task_id) for task_id in shown)
        return LinkList(links, max((total or len(task_ids)) - len(shown), 0))


def _ids_of(rows: Any) -> tuple[list[str], int]:
    # The first ids by age and, only when there are more, how many (one indexed count).
    ids = list(rows.order_by("date_created").values_list("task_id", flat=True)[:LINKS_SHOWN + 1])
    return ids, rows.count() if len(ids) > LINKS_SHOWN else len(ids)


def _group_members(row: TaskResult) -> tuple[list[Any], int]:
    # The stored member list keeps the group's order and names members that have no row
    # yet; without one (a group nobody saved), the rows that carry the group id.
    if not row.group_id:
        return [], 0
    db = row._state.db or "default"
    saved = GroupResult.objects.using(db).filter(group_id=row.group_id) \
        .values_list("result", flat=True).first()
    if saved is None:
        saved = ChordCounter.objects.using(db).filter(group_id=row.group_id) \
            .values_list("member_ids", flat=True).first()
    if saved is not None:
        return list(saved), len(saved)
    return _ids_of(TaskResult.objects.using(db).filter(group_id=row.group_id))


def _chord(row: TaskResult, links: _Linker) -> Chord | None:
    counter = ChordCounter.objects.using(row._state.db or "default") \
        .filter(group_id=row.group_id).values_list("body", "remaining", "total").first()
    if counter is None:
        return None
    body, remaining, total = counter
    options = body.get("options") if isinstance(body, dict) else None
    body_id = options.get("task_id") if isinstance(options, dict) else None
    return Chord(links.one(body_id), max(remaining, 0), total)
