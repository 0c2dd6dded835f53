"""Signature: a task call as a value that can be passed around and sent later (client layer).

A Signature is a class, not a dict: ``to_dict()``/``from_dict()`` give Celery's wire form
(``{"task", "args", "kwargs", "options", "subtask_type", "immutable"}``, as Celery 5.7 writes
it; an older Celery's ``chord_size`` key is ignored when read), and ``from_dict`` rebuilds
the right primitive (chain, group, chord, ...) from its ``subtask_type``, so a canvas sent
by Celery can be continued here and the reverse.
Partial application follows Celery: arguments given when it is called are prepended to its
own (unless it is immutable), keyword arguments merge, and options given at call time win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from djtasks.exceptions import NotRegistered
from djtasks.protocol import new_task_id
from djtasks.registry import app_or_default

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.result import AsyncResult
    from djtasks.task import Task

#: Options that hold other signatures: written as their wire dicts by to_dict().
SIGNATURE_OPTIONS = ("link", "link_error")
#: Options Celery writes into every signature it freezes (``reply_to``: the sending client's
#: reply queue, for Celery's rpc:// result backend) that mean nothing to djtasks, which stores
#: results in its backend: read_options() drops them, so a worker continuing a Celery canvas
#: does not refuse them as unknown call options.
CELERY_ONLY_OPTIONS = ("reply_to",)


class Signature:
    """The name, arguments and options of one task call."""

    #: Celery's name for the kind of primitive on the wire; None for a plain task call.
    subtask_type: ClassVar[str | None] = None
    _by_subtask_type: ClassVar[dict[str, type[Signature]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.subtask_type is not None:
            Signature._by_subtask_type[cls.subtask_type] = cls

    def __init__(self, task: str | Task, args: Sequence[Any] | None = None,
                 kwargs: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                 immutable: bool = False, app: App | None = None) -> None:
        self.task = task if isinstance(task, str) else task.name
        self.args = tuple(args or ())
        self.kwargs = dict(kwargs or {})
        self.options = dict(options or {})
        self.immutable = immutable
        self._app = app if app is not None or isinstance(task, str) else task._app

    @property
    def name(self) -> str:
        return self.task

    @property
    def id(self) -> str | None:
        """The task id this call will have, once frozen (or given as ``task_id``)."""
        return self.options.get("task_id")

    @property
    def app(self) -> App:
        """The app given (or its task's), else the default one, found each time it is asked."""
        return app_or_default(self._app)

    @property
    def type(self) -> Task:
        """The registered task this signature calls (Celery's ``sig.type``)."""
        return self.app.tasks[self.task]

    def __repr__(self) -> str:
        parts = [repr(arg) for arg in self.args]
        parts += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"{self.task}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # Mutable through set(), like Celery's; typeshed types __hash__ as a method, never None.
    __hash__ = None  # type: ignore[assignment]

    # -- the wire form --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return Celery's JSON form of this signature."""
        return {"task": self.task, "args": list(self.args), "kwargs": dict(self.kwargs),
                "options": wire_options(self.options), "subtask_type": self.subtask_type,
                "immutable": self.immutable}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: App | None = None) -> Signature:
        """Rebuild a signature, or a chain/group/chord/..., from its wire form."""
        if isinstance(data, Signature):
            return data
        if not isinstance(data, Mapping) or not isinstance(data.get("task"), str):
            raise TypeError(f"signature: expected a dict with a 'task' name, got {data!r}")
        kind = data.get("subtask_type")
        if kind:
            primitive = Signature._by_subtask_type.get(kind)
            if primitive is None:
                raise TypeError(f"signature: unknown subtask_type {kind!r}, expected one of "
                                f"{sorted(Signature._by_subtask_type)}")
            return primitive.from_wire(data, app)
        return Signature(data["task"], data.get("args") or (), data.get("kwargs") or {},
                         read_options(data.get("options"), app),
                         bool(data.get("immutable", False)), app=app)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], app: App | None) -> Signature:
        """Build this primitive from a wire dict whose subtask_type names it."""
        raise NotImplementedError(f"{cls.__name__} must define from_wire()")

    # -- partial application ------------------------------------------------------------
    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Update the options in place (as Celery does) and return the signature."""
        if immutable is not None:
            self.immutable = immutable
        self.options.update(options)
        return self

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Signature:
        """Return a copy with ``args`` prepended, ``kwargs`` merged and ``options`` applied."""
        merged_args, merged_kwargs = self._merge(args, kwargs)
        return Signature(self.task, merged_args, merged_kwargs, {**self.options, **options},
                         self.immutable, app=self._app)

    def _merge(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
               ) -> tuple[tuple, dict]:
        if self.immutable:
            return self.args, dict(self.kwargs)
        return tuple(args or ()) + self.args, {**self.kwargs, **(kwargs or {})}

    # -- callbacks and composition ---------------------------------------------------------
    def link(self, callback: Signature) -> Signature:
        """Run ``callback`` with this call's result when it succeeds; return ``callback``."""
        self.options.setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run ``errback`` when this call fails; return ``errback``."""
        self.options.setdefault("link_error", []).append(errback)
        return errback

    def on_error(self, errback: Signature) -> Signature:
        """Like link_error(), but return this signature (for chaining calls)."""
        self.link_error(errback)
        return self

    def __or__(self, other: Signature) -> Signature:
        from djtasks.canvas.chain import chain  # the chain module builds on this one

        if not isinstance(other, Signature):
            return NotImplemented
        return chain(self, other, app=self._app)

    def freeze(self, _id: str | None = None, *, group_id: str | None = None,
               group_index: int | None = None, chord: Signature | None = None,
               root_id: str | None = None, parent_id: str | None = None) -> AsyncResult:
        """Fix the task id (and the given placement) now; return the result to come."""
        from djtasks.result import AsyncResult

        task_id = self.options["task_id"] = self.options.get("task_id") or _id or new_task_id()
        placement = {"group_id": group_id, "group_index": group_index, "chord": chord,
                     "root_id": root_id, "parent_id": parent_id}
        self.options.update({key: value for key, value in placement.items() if value is not None})
        return AsyncResult(task_id, app=self._app, task_name=self.task)

    # -- calling ------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send the call, with ``args``/``kwargs`` applied as partials."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Send the call; options given here win over the signature's own."""
        merged_args, merged_kwargs = self._merge(args, kwargs)
        merged_options = {**self.options, **options}
        try:
            task = self.app.tasks[self.task]
        except NotRegistered:  # a task of another service: send by name, unchecked
            return self.app.send_task(self.task, merged_args, merged_kwargs, **merged_options)
        return task.apply_async(merged_args, merged_kwargs, **merged_options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        """Run the call here and now, whatever ``task_always_eager`` says; return its EagerResult.

        As ``Task.apply``: handlers and signals fire, and what is linked to it runs eagerly too.
        """
        merged_args, merged_kwargs = self._merge(args, kwargs)
        return self.type.apply(merged_args, merged_kwargs, **{**self.options, **options})

    @property
    def always_eager(self) -> bool:
        """True when the app runs every call here and now (``task_always_eager``)."""
        return bool(self.app.settings.task_always_eager)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task inline, in this process, with the partials applied."""
        merged_args, merged_kwargs = self._merge(args, kwargs)
        return self.app.tasks[self.task](*merged_args, **merged_kwargs)


def signature(task: str | Task | Mapping[str, Any] | Signature, args: Sequence[Any] | None = None,
              kwargs: Mapping[str, Any] | None = None, app: App | None = None,
              **options: Any) -> Signature:
    """Build a Signature by task name, Task or wire dict (``djtasks.signature``)."""
    if isinstance(task, Signature):
        return task
    if isinstance(task, Mapping):
        return Signature.from_dict(task, app=app)
    return Signature(task, args, kwargs, options, app=app)


def maybe_signature(value: Signature | Mapping[str, Any], app: App | None = None) -> Signature:
    """Return ``value`` as a Signature: it may be one already, or its wire dict."""
    return value if isinstance(value, Signature) else Signature.from_dict(value, app=app)


def signature_list(value: Signature | Mapping[str, Any] | Iterable[Any] | None,
                   app: App | None = None) -> list[Signature]:
    """Normalize ``link=``/``link_error=``: one signature, or a list of them, or None."""
    if value is None:
        return []
    if isinstance(value, Signature | Mapping):
        return [maybe_signature(value, app)]
    items: Iterable[Any] = value
    return [maybe_signature(item, app) for item in items]


def wire_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``options`` JSON-ready: nested signatures become their wire dicts."""
    ready = {}
    for key, value in options.items():
        if key in SIGNATURE_OPTIONS:
            value = [sig.to_dict() for sig in signature_list(value)]
        elif key == "chord" and isinstance(value, Signature):
            value = value.to_dict()
        ready[key] = value
    return ready


def read_options(options: Mapping[str, Any] | None, app: App | None) -> dict[str, Any]:
    """The inverse of wire_options: nested wire dicts become signatures again."""
    ready = {key: value for key, value in (options or {}).items() if key not in CELERY_ONLY_OPTIONS}
    for key in SIGNATURE_OPTIONS:
        if ready.get(key):
            ready[key] = signature_list(ready[key], app)
    if isinstance(ready.get("chord"), Mapping):
        ready["chord"] = Signature.from_dict(ready["chord"], app)
    return ready


def top_result(result: Any) -> Any:
    """Return the first result up ``result``'s parents: where the call before it hangs on.

    A chord's result is its body's, whose parent is the header group: the step before the
    chord becomes the parent of the topmost result not yet linked.
    """
    while getattr(result, "parent", None) is not None:
        result = result.parent
    return result
