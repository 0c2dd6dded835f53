"""chain: calls run one after the other, each result fed to the next (client layer).

On the wire a chain is Celery's: the first step is published with the remaining steps in
its ``chain`` embed, last step first, and each worker that finishes a step publishes the
next one. Every step's task id is fixed before anything is sent, so the returned result
(the last step's) knows its ``.parent`` back to the first step. A group followed by
another step becomes a chord, as in Celery, so the next step gets the group's results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from djtasks.canvas.signature import (
    Signature,
    maybe_signature,
    read_options,
    signature_list,
    top_result,
)
from djtasks.protocol import new_task_id

if TYPE_CHECKING:
    from djtasks.application import App

#: Options that belong to the last step of a chain (where its outcome is decided).
FINAL_STEP_OPTIONS = ("task_id", "chord", "group_id", "group_index", "link", "chain")


class chain(Signature):  # noqa: N801 - Celery's name
    """``chain(a, b, c)`` or ``a | b | c``."""

    subtask_type = "chain"

    def __init__(self, *tasks: Signature | Mapping[str, Any] | Sequence[Any],
                 app: App | None = None, **options: Any) -> None:
        given: tuple[Any, ...] = tasks
        if len(tasks) == 1 and not isinstance(tasks[0], Signature | Mapping):
            given = tuple(tasks[0])
        steps = [maybe_signature(task, app) for task in given]
        super().__init__("celery.chain", (), {"tasks": steps}, options,
                         app=app if app is not None else _first_app(steps))

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]

    def __repr__(self) -> str:
        return " | ".join(repr(task) for task in self.tasks) or "chain()"

    def __or__(self, other: Signature) -> Signature:
        if not isinstance(other, Signature):
            return NotImplemented
        more = other.tasks if isinstance(other, chain) else [other]
        return chain(*self.tasks, *more, app=self._app, **self.options)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"tasks": [task.to_dict() for task in self.tasks]}
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], app: App | None) -> chain:
        tasks = (data.get("kwargs") or {}).get("tasks") or data.get("args") or ()
        return cls(*[maybe_signature(task, app) for task in tasks], app=app,
                   **read_options(data.get("options"), app))

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> chain:
        copy = chain(*[task.clone() for task in self.tasks], app=self._app,
                     **{**self.options, **options})
        if args or kwargs:
            copy.tasks[0] = copy.tasks[0].clone(args, kwargs)
        return copy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling a chain sends it, as in Celery."""
        return self.apply_async(args, kwargs)

    # -- sending --------------------------------------------------------------------------
    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Send the first step with the rest in its ``chain``; return the last step's result."""
        if self.always_eager:
            return self.apply(args, kwargs, **options)
        steps, root_id, parent_id, after = self._placed_steps(args, kwargs, options)
        results = self.freeze_steps(steps, root_id=root_id, parent_id=parent_id)
        first, rest = steps[0], steps[1:]
        remaining = after + [step.to_dict() for step in reversed(rest)]
        send: dict[str, Any] = {"chain": remaining} if remaining else {}
        if root_id is not None:
            send["root_id"] = root_id
        if parent_id is not None:
            send["parent_id"] = parent_id
        first.apply_async(**send)
        return results[-1]

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        """Run every step here and now, each fed the value of the one before.

        Returns the last step's result, linked by ``.parent`` back to the first step's, as
        when the chain is sent. As in Celery, a failed step stops the chain: unless it is
        the last step (whose failure is the result), its exception is raised from here,
        by the step itself with ``task_eager_propagates``, else by reading its value.
        """
        steps, root_id, parent_id, after = self._placed_steps(args, kwargs, options)
        if after:  # the steps that follow this whole chain run after its last step
            steps[-1].options["chain"] = after
        self.freeze_steps(steps, root_id=root_id, parent_id=parent_id)
        result = steps[0].apply()
        for step in steps[1:]:
            # get() re-raises the failure of the step before: nothing after it runs.
            previous, result = result, step.apply((result.get(),), parent_id=result.id)
            top_result(result).parent = previous
        return result

    def _placed_steps(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
                      options: Mapping[str, Any]) -> tuple[list[Signature], Any, Any, list[Any]]:
        """Return the steps with the call's options placed, its root and parent ids, and the
        steps that follow the whole chain (``chain`` embed, last step first)."""
        options = {**self.options, **options}
        steps = self.prepared_steps(args, kwargs)
        if not steps:
            raise ValueError("chain: expected at least one task, got an empty chain")
        root_id = options.pop("root_id", None)
        parent_id = options.pop("parent_id", None)
        final_options = {key: options.pop(key) for key in FINAL_STEP_OPTIONS if key in options}
        errbacks = signature_list(options.pop("link_error", None), self._app)
        # Options of the whole chain (queue, priority, ...) reach every step, as in Celery,
        # without overriding a step's own.
        for step in steps:
            for key, value in options.items():
                step.options.setdefault(key, value)
            for errback in errbacks:
                step.link_error(errback)
        # The steps that follow this whole chain (it is itself a step of an outer chain or
        # a chord's body) run after its own last step: they go first in the reversed list.
        after = list(final_options.pop("chain", None) or [])
        steps[-1].options.update(final_options)
        return steps, root_id, parent_id, after

    def prepared_steps(self, args: Sequence[Any] | None = None,
                       kwargs: Mapping[str, Any] | None = None) -> list[Signature]:
        """Return copies of the steps: nested chains flattened, ``group | x`` made a chord."""
        from djtasks.canvas.chord import chord
        from djtasks.canvas.group import group

        flat: list[Signature] = []
        for task in self.tasks:
            flat.extend(step.clone() for step in (task.tasks if isinstance(task, chain) else [task]))
        if flat and (args or kwargs):
            flat[0] = flat[0].clone(args, kwargs)
        steps: list[Signature] = []
        for step in flat:
            if steps and isinstance(steps[-1], group):
                steps[-1] = chord(steps[-1], step, app=self._app)
            elif steps and isinstance(steps[-1], chord) and steps[-1].body is None:
                steps[-1].set_body(step)
            else:
                steps.append(step)
        return steps

    @staticmethod
    def freeze_steps(steps: list[Signature], root_id: str | None = None,
                     parent_id: str | None = None) -> list[Any]:
        """Fix every step's id; link each result to the one before as its ``parent``."""
        first_id = steps[0].id or new_task_id()
        root_id = root_id or first_id
        results: list[Any] = []
        for index, step in enumerate(steps):
            result = step.freeze(first_id if index == 0 else None, root_id=root_id)
            if results:
                top_result(result).parent = results[-1]
            results.append(result)
        if parent_id is not None:
            steps[0].options.setdefault("parent_id", parent_id)
        return results

    def freeze(self, _id: str | None = None, **placement: Any) -> Any:
        """Fix every step's id (``_id`` is the last step's, as in Celery); return the last result."""
        steps = self.prepared_steps()
        self.kwargs["tasks"] = steps
        last = steps[-1]
        if _id is not None:
            last.options.setdefault("task_id", _id)
        for key, value in placement.items():
            if value is not None and key in FINAL_STEP_OPTIONS:
                last.options[key] = value
        return self.freeze_steps(steps, root_id=placement.get("root_id"))[-1]


def _first_app(steps: list[Signature]) -> App | None:
    return next((step._app for step in steps if step._app is not None), None)

