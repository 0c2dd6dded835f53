"""chord: a group whose results, in member order, feed one body call (client layer).

The join is a counter row in the result database, written before any header task is
published and decremented atomically (and idempotently) by each header task as it
finishes. The worker whose decrement reaches zero publishes the body, inside the same
transaction: there is no ``chord_unlock`` task polling for the header, and a chord does
not hang when one of its workers dies. A failed header task fails the chord at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from djtasks.canvas.group import group
from djtasks.canvas.signature import (
    Signature,
    maybe_signature,
    read_options,
    signature_list,
    top_result,
)
from djtasks.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.result import AsyncResult, GroupResult

#: Options that belong to the body: what follows the chord, and where it is placed.
BODY_OPTIONS = ("task_id", "chord", "group_id", "group_index", "link", "link_error", "chain")


class chord(Signature):  # noqa: N801 - Celery's name
    """``chord(header, body)`` or ``chord(header)(body)``."""

    subtask_type = "chord"

    def __init__(self, header: Signature | Iterable[Any], body: Signature | Mapping | None = None,
                 app: App | None = None, **options: Any) -> None:
        header = header if isinstance(header, group) else group(header, app=app)
        body = maybe_signature(body, app) if body is not None else None
        owner = app if app is not None else header._app or (body._app if body else None)
        super().__init__("celery.chord", (), {"header": header, "body": body, "kwargs": {}},
                         options, app=owner)

    @property
    def tasks(self) -> list[Signature]:
        return self.header.tasks

    @property
    def header(self) -> group:
        return self.kwargs["header"]

    @property
    def body(self) -> Signature | None:
        return self.kwargs["body"]

    def set_body(self, body: Signature) -> chord:
        self.kwargs["body"] = body
        return self

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"header": self.header.to_dict(),
                          "body": self.body.to_dict() if self.body is not None else None,
                          "kwargs": {}}
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], app: App | None) -> chord:
        parts = data.get("kwargs") or {}
        header = Signature.from_dict(parts["header"], app) if isinstance(parts.get("header"), Mapping) \
            else group(*(parts.get("header") or ()), app=app)
        body = parts.get("body")
        return cls(header, maybe_signature(body, app) if body else None, app=app,
                   **read_options(data.get("options"), app))

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> chord:
        body = self.body.clone() if self.body is not None else None
        return chord(self.header.clone(args, kwargs), body, app=self._app,
                     **{**self.options, **options})

    def link(self, callback: Signature) -> Signature:
        """Callbacks of a chord are the body's."""
        return self._require_body().link(callback)

    def link_error(self, errback: Signature) -> Signature:
        """Errbacks of a chord are the body's: they fire when the body or the chord fails."""
        return self._require_body().link_error(errback)

    def __call__(self, body: Signature | None = None, **options: Any) -> AsyncResult:
        """``chord(header)(body)`` sends the chord with ``body``."""
        if body is not None:
            self.set_body(maybe_signature(body, self._app))
        return self.apply_async(**options)

    def _require_body(self) -> Signature:
        if self.body is None:
            raise ValueError("chord: expected a body (chord(header, body) or chord(header)(body))")
        return self.body

    # -- sending --------------------------------------------------------------------------
    def freeze(self, _id: str | None = None, *, group_id: str | None = None,
               group_index: int | None = None, chord: Signature | None = None,
               root_id: str | None = None, parent_id: str | None = None) -> AsyncResult:
        """Fix the header's and the body's ids; return the body's result (parent: the header)."""
        body = self._require_body()
        result = body.freeze(_id, group_id=group_id, group_index=group_index, chord=chord,
                             root_id=root_id)
        header_result = self.header.freeze(chord=body, root_id=root_id, parent_id=parent_id)
        result.parent = header_result
        return result

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Register the join, then send the header; return the body's result."""
        if self.always_eager:
            return self.apply(args, kwargs, **options)
        options = {**self.options, **options}
        body = self._placed_body(options)
        header = self._header_for(args, kwargs)
        sending = chord(header, body, app=self._app)
        root_id, parent_id = options.get("root_id"), options.get("parent_id")
        result = sending.freeze(body.options.get("task_id"), root_id=root_id, parent_id=parent_id)
        if not header.tasks:  # nothing to wait for: the body runs at once, with no results
            body.apply_async(([],), root_id=root_id, parent_id=parent_id)
            return result
        backend = self.app.backend
        if not backend.supports_chord_counter:
            raise ImproperlyConfigured(f"chord: the result backend {type(backend).__name__} "
                                       f"cannot count a chord's header tasks")
        # freeze() made the header's GroupResult the body result's parent.
        header_result = cast("GroupResult", result.parent)
        backend.start_chord(header_result.id, [member.id for member in header_result.results],
                            body.to_dict())
        defaults = {key: value for key, value in options.items() if key not in ("root_id", "parent_id")}
        for member in header.tasks:
            for key, value in defaults.items():
                member.options.setdefault(key, value)
            member.apply_async(root_id=root_id, parent_id=parent_id)
        return result

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              propagate: bool = True, **options: Any) -> Any:
        """Run the header here and now, then the body with its values; return the body's result.

        The result's ``.parent`` is the header's GroupResult, as when the chord is sent. As
        in Celery, a failed header task raises its exception from here and the body does
        not run, unless ``propagate`` is false: the body then gets the exception as a value.
        """
        options = {**self.options, **options}
        body = self._placed_body(options)
        header_result = self._header_for(args, kwargs).apply(**options)
        # Member by member: the values are here already, nothing is waited for.
        values = [member.get(propagate=propagate) for member in header_result.results]
        last = header_result.results[-1].id if header_result.results else options.get("parent_id")
        result = body.apply((values,), root_id=options.get("root_id"), parent_id=last)
        top_result(result).parent = header_result
        return result

    def _placed_body(self, options: dict[str, Any]) -> Signature:
        """Return a copy of the body given the options of ``options`` that are its own."""
        body = self._require_body().clone()
        for key in BODY_OPTIONS:
            if key not in options:
                continue
            value = options.pop(key)
            if key in ("link", "link_error"):
                for sig in signature_list(value, self._app):
                    getattr(body, key)(sig)
            elif key == "chain":
                body.options["chain"] = list(body.options.get("chain") or []) + list(value or [])
            else:
                body.options[key] = value
        return body

    def _header_for(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> group:
        return group(*[task.clone(args, kwargs) for task in self.header.tasks], app=self._app,
                     **self.header.options)
