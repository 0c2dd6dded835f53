"""AsyncResult and EagerResult: read a task's state, outcome and children back (client layer)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from djtasks import states
from djtasks.backends.base import ResultMeta, exception_from_dict
from djtasks.exceptions import IncompleteStream, TaskRevokedError
from djtasks.registry import app_or_default
from djtasks.result.graph import DependencyGraph
from djtasks.result.progress import follow_states, meta_message
from djtasks.task import current_request

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.result.group import GroupResult


class AsyncResult:
    """The handle of a published task: its state, its result, ``get()`` to wait for it."""

    def __init__(self, id: str, app: App | None = None, task_name: str | None = None, *,  # noqa: A002 - Celery's name
                 parent: AsyncResult | GroupResult | None = None) -> None:
        self.id = id
        self._app = app
        self._task_name = task_name
        #: The result this one follows in a chain, when the canvas that built it knew; the
        #: store is never asked (as in Celery), so a result made from a bare id has None.
        self.parent = parent
        self._meta: ResultMeta | None = None  # kept once ready: a ready state never changes
        self._children: list[AsyncResult] | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def app(self) -> App:
        self._app = app_or_default(self._app)
        return self._app

    @property
    def task_id(self) -> str:
        return self.id

    def _get_meta(self) -> ResultMeta:
        if self._meta is not None:
            return self._meta
        meta = self.app.backend.get_meta(self.id)
        if meta.ready:
            self._meta = meta
        return meta

    @property
    def state(self) -> str:
        return self._get_meta().status

    status = state

    @property
    def result(self) -> Any:
        """The return value, or the exception of a failed task (without raising it)."""
        return outcome_of(self._get_meta())

    info = result

    @property
    def traceback(self) -> str | None:
        return self._get_meta().traceback or None

    @property
    def date_done(self) -> datetime | None:
        return self._get_meta().date_done

    @property
    def name(self) -> str | None:
        return self._get_meta().task_name or self._task_name

    @property
    def retries(self) -> int:
        return self._get_meta().retries

    @property
    def worker(self) -> str | None:
        return self._get_meta().worker or None

    @property
    def queue(self) -> str | None:
        return self._get_meta().queue or None

    @property
    def args(self) -> list | None:
        """The task's positional arguments, stored with the result_extended setting."""
        return self._get_meta().args

    @property
    def kwargs(self) -> dict | None:
        """The task's keyword arguments, stored with the result_extended setting."""
        return self._get_meta().kwargs

    def ready(self) -> bool:
        return self._get_meta().ready

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 0.5, on_message: Callable[[dict], Any] | None = None) -> Any:
        """Wait until the task is ready and return its value, re-raising its exception.

        Raises djtasks.exceptions.TimeoutError after ``timeout`` seconds. Waiting inside a
        task is refused: with every worker slot waiting on another task, nothing would run.
        ``on_message`` is called with the meta dict of each state the task is seen in
        (``PROGRESS`` updates included), the final one last.
        """
        refuse_wait_inside_task()
        if self._meta is None:
            if on_message is not None:
                meta = follow_states(self.app.backend, self.id, on_message, timeout, interval)
            else:
                meta = self.app.backend.wait(self.id, timeout=timeout, interval=interval)
            self._meta = meta
        elif on_message is not None:
            on_message(meta_message(self._meta))
        return raise_or_return(self._meta, propagate)

    wait = get

    def forget(self) -> None:
        """Delete the stored result."""
        self.app.backend.forget(self.id)
        self._meta = None
        self._children = None

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Ask workers not to run this task (see ``Control.revoke``)."""
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)

    # -- the tasks this one started ----------------------------------------------------------
    @property
    def children(self) -> list[AsyncResult]:
        """Results of the tasks this one started (callbacks included); empty until it is ready.

        The ids are stored with the task's outcome, so they are known only once it is ready.
        """
        if self._children is None:
            meta = self._get_meta()
            if not meta.ready:
                return []
            self._children = [AsyncResult(child, app=self._app, parent=self) for child in meta.children]
        return list(self._children)

    def iterdeps(self, intermediate: bool = False) -> Iterator[tuple[AsyncResult | None, AsyncResult]]:
        """Yield ``(parent, result)`` for this result and its descendants, breadth first.

        As in Celery, a node's children are only known once it is ready: reaching a node
        that is not raises IncompleteStream, unless ``intermediate`` is true, in which case
        the walk goes on without that node's children.
        """
        queue: deque[tuple[AsyncResult | None, AsyncResult]] = deque([(None, self)])
        while queue:
            parent, node = queue.popleft()
            yield parent, node
            if node.ready():
                queue.extend((node, child) for child in node.children)
            elif not intermediate:
                raise IncompleteStream(f"task {node.id} is not ready: its children are unknown")

    def collect(self, intermediate: bool = False, timeout: float | None = None,
                propagate: bool = True, interval: float = 0.5) -> Iterator[tuple[AsyncResult, Any]]:
        """Yield ``(result, value)`` for this result and its descendants, waiting for each.

        The order is iterdeps' (breadth first, as in Celery). Each node is waited for with
        ``get()`` before its children are looked up, so a node's children are always known;
        ``intermediate`` is passed to iterdeps for Celery compatibility.
        """
        for _, node in self.iterdeps(intermediate=intermediate):
            yield node, node.get(timeout=timeout, propagate=propagate, interval=interval)

    def build_graph(self, intermediate: bool = False) -> DependencyGraph:
        """Return the graph of this result and its descendants (see iterdeps)."""
        graph = DependencyGraph()
        for parent, node in self.iterdeps(intermediate=intermediate):
            graph.add_arc(node)
            if parent is not None:
                graph.add_edge(parent, node)
        return graph

    @property
    def graph(self) -> DependencyGraph:
        """The dependency graph of the finished tree; IncompleteStream while a node runs."""
        return self.build_graph()

    def _cache(self, meta: ResultMeta) -> None:
        """Keep ``meta`` read by someone else (a GroupResult's one query) when it is final."""
        if meta.ready:
            self._meta = meta


class EagerResult(AsyncResult):
    """The outcome of a task run in this process (``apply()``, ``task_always_eager``)."""

    def __init__(self, id: str, meta: ResultMeta, app: App | None = None, *,  # noqa: A002
                 parent: AsyncResult | None = None, children: list[Any] | None = None) -> None:
        super().__init__(id, app=app, task_name=meta.task_name, parent=parent)
        self._meta = meta
        # The results of what the run set off (callbacks, errbacks, the next chain step):
        # eager ones, which the backend never stored.
        self._children = list(children or [])

    def __repr__(self) -> str:
        return f"<EagerResult: {self.id}>"

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 0.5, on_message: Callable[[dict], Any] | None = None) -> Any:
        assert self._meta is not None
        if on_message is not None:
            on_message(meta_message(self._meta))
        return raise_or_return(self._meta, propagate)

    wait = get

    def forget(self) -> None:
        """Nothing is stored for an eager run."""


def refuse_wait_inside_task() -> None:
    """Raise RuntimeError when called from a task a worker runs (eager runs may wait).

    With every worker slot waiting on another task, nothing would run: a deadlock.
    """
    request = current_request()
    if request is not None and not request.is_eager:
        raise RuntimeError(
            "Never call result.get() within a task: a worker slot waiting on another task "
            "can deadlock the pool. Chain the tasks instead."
        )


def outcome_of(meta: ResultMeta) -> Any:
    if isinstance(meta.result, BaseException):  # an eager run keeps the exception itself
        return meta.result
    if meta.status in states.EXCEPTION_STATES and isinstance(meta.result, dict) \
            and "exc_type" in meta.result:
        return exception_from_dict(meta.result)
    return meta.result


def raise_or_return(meta: ResultMeta, propagate: bool) -> Any:
    outcome = outcome_of(meta)
    if propagate and meta.status in states.PROPAGATE_STATES:
        if isinstance(outcome, BaseException):
            raise outcome
        raise TaskRevokedError(f"task {meta.task_id} was revoked")
    return outcome
