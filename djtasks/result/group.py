"""GroupResult: the results of a group's members, read and waited for together (client layer).

Members are AsyncResults or nested GroupResults, kept nested as in Celery: ``get()`` of a
group holding a group returns a list holding a list. Every read of the members' states is
one ``get_many`` query for all the tasks below the group, whatever its size and nesting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from djtasks import states
from djtasks.backends.base import FIRST_POLL_INTERVAL, ResultMeta, sleep_before_next_poll
from djtasks.registry import app_or_default
from djtasks.result.async_result import AsyncResult, raise_or_return, refuse_wait_inside_task

if TYPE_CHECKING:
    from djtasks.application import App


class GroupResult:
    """The results of a group (Celery's API): wait for all, count, revoke, save and restore."""

    def __init__(self, id: str, results: Sequence[AsyncResult | GroupResult],  # noqa: A002 - Celery's name
                 app: App | None = None, parent: AsyncResult | None = None) -> None:
        self.id = id
        self.results: list[AsyncResult | GroupResult] = list(results)
        self._app = app
        self.parent = parent

    # -- a sequence of members ----------------------------------------------------------------
    @property
    def children(self) -> list[AsyncResult | GroupResult]:
        return self.results

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult | GroupResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult | GroupResult:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(member.id for member in self.results)}]>"

    @property
    def app(self) -> App:
        self._app = app_or_default(self._app)
        return self._app

    # -- states ---------------------------------------------------------------------------------
    def ready(self) -> bool:
        """True when every member is ready."""
        metas = self._read()
        return all(_ready(member, metas) for member in self.results)

    def waiting(self) -> bool:
        """True while a member is not ready."""
        return not self.ready()

    def successful(self) -> bool:
        """True when every member succeeded."""
        metas = self._read()
        return all(_successful(member, metas) for member in self.results)

    def failed(self) -> bool:
        """True when a member failed."""
        return any(meta.status == states.FAILURE for meta in self._read().values())

    def completed_count(self) -> int:
        """Return how many members succeeded (a nested group counts once, when all of it did)."""
        metas = self._read()
        return sum(_successful(member, metas) for member in self.results)

    # -- waiting --------------------------------------------------------------------------------
    def get(self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5) -> list[Any]:
        """Wait for the members; return their values in member order (nested lists for groups).

        As in Celery, members are taken in order: the first one that failed raises its
        exception (with ``propagate``) as soon as every member before it is ready, without
        waiting for those after it. Raises djtasks.exceptions.TimeoutError after ``timeout``
        seconds. The backend is polled with one query a round, from 5 ms up to ``interval``.
        """
        refuse_wait_inside_task()
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(FIRST_POLL_INTERVAL, interval)
        while True:
            metas = self._read()
            if self._settled(metas, propagate):
                return _values(self, metas, propagate)
            pause = sleep_before_next_poll(f"group {self.id}", deadline, pause, timeout)
            pause = min(pause * 2, interval)

    join = get

    def _settled(self, metas: dict[str, ResultMeta], propagate: bool) -> bool:
        # Walking the tasks in member order: a failure found before any unready task is the
        # one Celery's member-by-member get() would raise, so there is nothing left to wait for.
        for leaf in _leaves(self):
            meta = metas[leaf.id]
            if not meta.ready:
                return False
            if propagate and meta.status in states.PROPAGATE_STATES:
                return True
        return True

    def _read(self) -> dict[str, ResultMeta]:
        """Return the state of every task below the group; one query for those not known final."""
        leaves = list(_leaves(self))
        metas = {leaf.id: leaf._meta for leaf in leaves if leaf._meta is not None}
        unknown = list(dict.fromkeys(leaf.id for leaf in leaves if leaf.id not in metas))
        if unknown:
            metas.update(self.app.backend.get_many(unknown))
            for leaf in leaves:
                leaf._cache(metas[leaf.id])
        return metas

    # -- acting on the members ------------------------------------------------------------------
    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Revoke every task below the group, in one call (see ``Control.revoke``)."""
        self.app.control.revoke([leaf.id for leaf in _leaves(self)], terminate=terminate, signal=signal)

    def save(self) -> None:
        """Store the member ids under the group id, for ``GroupResult.restore``.

        Only flat groups can be saved: the store keeps a list of task ids, and a nested
        group's id read back would pass for a task's.
        """
        nested = [member.id for member in self.results if isinstance(member, GroupResult)]
        if nested:
            raise TypeError(f"GroupResult.save(): expected task results only, got nested groups {nested}")
        self.app.backend.save_group(self.id, [member.id for member in self.results])

    def delete(self) -> None:
        """Delete the saved group, keeping its members' results (Celery's meaning)."""
        self.app.backend.forget_group(self.id)

    def forget(self) -> None:
        """Delete the saved group and the result of every task below it."""
        self.delete()
        for leaf in _leaves(self):
            leaf.forget()

    @classmethod
    def restore(cls, id: str, app: App | None = None) -> GroupResult | None:  # noqa: A002 - Celery's name
        """Return the group saved under ``id``, or None when none is."""
        app = app_or_default(app)
        ids = app.backend.restore_group(id)
        if ids is None:
            return None
        return cls(id, [AsyncResult(task_id, app=app) for task_id in ids], app=app)


def _leaves(group: GroupResult) -> Iterator[AsyncResult]:
    """Yield the task results below ``group``, depth first, in member order."""
    for member in group.results:
        if isinstance(member, GroupResult):
            yield from _leaves(member)
        else:
            yield member


def _ready(member: AsyncResult | GroupResult, metas: dict[str, ResultMeta]) -> bool:
    if isinstance(member, GroupResult):
        return all(_ready(inner, metas) for inner in member.results)
    return metas[member.id].ready


def _successful(member: AsyncResult | GroupResult, metas: dict[str, ResultMeta]) -> bool:
    if isinstance(member, GroupResult):
        return all(_successful(inner, metas) for inner in member.results)
    return metas[member.id].status == states.SUCCESS


def _values(group: GroupResult, metas: dict[str, ResultMeta], propagate: bool) -> list[Any]:
    values = []
    for member in group.results:
        if isinstance(member, GroupResult):
            values.append(_values(member, metas, propagate))
        else:
            values.append(raise_or_return(metas[member.id], propagate))
    return values
