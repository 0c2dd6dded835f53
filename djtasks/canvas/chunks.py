"""xmap, xstarmap and chunks: one task over many arguments, in few messages (client layer).

``add.map(items)`` and ``add.starmap(items)`` are one message that runs the task for every
item inside the worker (the built-in ``celery.map`` / ``celery.starmap`` tasks);
``add.chunks(items, n)`` splits the items into a group of ``starmap`` messages of ``n``
items each. The names and wire forms are Celery's, so Celery clients can send them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from djtasks.canvas.group import group
from djtasks.canvas.signature import Signature, maybe_signature, read_options

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.result import GroupResult


class _MapSignature(Signature):
    """A built-in task applying ``task`` to each item of ``it``."""

    builtin: str

    def __init__(self, task: Signature | Mapping[str, Any], it: Iterable[Any],
                 app: App | None = None, **options: Any) -> None:
        task = maybe_signature(task, app)
        super().__init__(self.builtin, (), {"task": task, "it": list(it)}, options,
                         immutable=True, app=app if app is not None else task._app)

    def __repr__(self) -> str:
        task, items = self.kwargs["task"], self.kwargs["it"]
        return f"[{task.task}(x) for x in {items!r}]" if self.subtask_type == "xmap" \
            else f"[{task.task}(*x) for x in {items!r}]"

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"task": self.kwargs["task"].to_dict(), "it": list(self.kwargs["it"])}
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], app: App | None) -> _MapSignature:
        kwargs = data.get("kwargs") or {}
        return cls(kwargs["task"], kwargs.get("it") or (), app=app,
                   **read_options(data.get("options"), app))

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> _MapSignature:
        return type(self)(self.kwargs["task"], self.kwargs["it"], app=self._app,
                          **{**self.options, **options})

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        if self.always_eager:
            return self.apply(args, kwargs, **options)
        # Sent by name: the built-in task's arguments are the wire forms.
        data = self.to_dict()
        return self.app.send_task(self.builtin, (), data["kwargs"], **{**self.options, **options})

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        """Run the built-in task here and now over every item; return its EagerResult."""
        builtin = self.app.tasks[self.builtin]
        return builtin.apply((), self.to_dict()["kwargs"], **{**self.options, **options})


class xmap(_MapSignature):  # noqa: N801 - Celery's name
    """``add.map([(1, 2), ...])``: ``[add(item) for item in it]``, in one message."""

    subtask_type = "xmap"
    builtin = "celery.map"


class xstarmap(_MapSignature):  # noqa: N801 - Celery's name
    """``add.starmap([(1, 2), ...])``: ``[add(*item) for item in it]``, in one message."""

    subtask_type = "xstarmap"
    builtin = "celery.starmap"


class chunks(Signature):  # noqa: N801 - Celery's name
    """``add.chunks(items, n)``: a group of starmaps of ``n`` items each."""

    subtask_type = "chunks"

    def __init__(self, task: Signature | Mapping[str, Any], it: Iterable[Any], n: int,
                 app: App | None = None, **options: Any) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"chunks: expected a chunk size n >= 1, got {n!r}")
        task = maybe_signature(task, app)
        super().__init__("celery.chunks", (), {"task": task, "it": [list(item) for item in it], "n": n},
                         options, immutable=True, app=app if app is not None else task._app)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"task": self.kwargs["task"].to_dict(), "it": self.kwargs["it"],
                          "n": self.kwargs["n"]}
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], app: App | None) -> chunks:
        kwargs = data.get("kwargs") or {}
        return cls(kwargs["task"], kwargs.get("it") or (), kwargs["n"], app=app,
                   **read_options(data.get("options"), app))

    def group(self) -> group:
        """The group of starmap calls this chunks stands for."""
        task, items, size = self.kwargs["task"], iter(self.kwargs["it"]), self.kwargs["n"]
        parts = []
        while batch := list(islice(items, size)):
            parts.append(xstarmap(task, batch, app=self._app))
        return group(*parts, app=self._app, **self.options)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, **options: Any) -> GroupResult:
        return self.group().apply_async(**options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> GroupResult:
        """Run every chunk here and now; return the GroupResult of their eager results."""
        return self.group().apply(**options)

    def __call__(self, **options: Any) -> GroupResult:
        return self.apply_async(**options)
