"""group: calls run in parallel, read back together as a GroupResult (client layer).

Every member is published with the group's id (``group`` header) and its index, so the
results can be read back in member order. Nested groups are flattened, as in Celery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from djtasks.canvas.signature import Signature, maybe_signature, read_options, signature_list
from djtasks.protocol import new_task_id

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.result import GroupResult

#: Options that place the group itself (inside an outer group or chord), not its members.
PLACEMENT_OPTIONS = ("task_id", "group_id", "group_index", "chord", "chain", "link")


class group(Signature):  # noqa: N801 - Celery's name
    """``group(add.s(1, 1), add.s(2, 2))`` or ``group(add.s(i, i) for i in range(10))``."""

    subtask_type = "group"

    def __init__(self, *tasks: Signature | Mapping[str, Any] | Iterable[Any],
                 app: App | None = None, **options: Any) -> None:
        given: tuple[Any, ...] = tasks
        if len(tasks) == 1 and not isinstance(tasks[0], Signature | Mapping):
            given = tuple(tasks[0])
        members: list[Signature] = []
        for task in given:
            member = maybe_signature(task, app)
            members.extend(member.tasks if isinstance(member, group) else [member])
        first_app = next((member._app for member in members if member._app is not None), None)
        super().__init__("celery.group", (), {"tasks": members}, options,
                         app=app if app is not None else first_app)

    @property
    def tasks(self) -> list[Signature]:
        return self.kwargs["tasks"]

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(task) for task in self.tasks)}])"

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"tasks": [task.to_dict() for task in self.tasks]}
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], app: App | None) -> group:
        tasks = (data.get("kwargs") or {}).get("tasks") or data.get("args") or ()
        return cls(*[maybe_signature(task, app) for task in tasks], app=app,
                   **read_options(data.get("options"), app))

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> group:
        members = [task.clone(args, kwargs) for task in self.tasks]
        return group(*members, app=self._app, **{**self.options, **options})

    def link(self, callback: Signature) -> Signature:
        """Link ``callback`` to every member (each member's result is passed to it)."""
        for task in self.tasks:
            task.link(callback.clone())
        return callback

    def link_error(self, errback: Signature) -> Signature:
        for task in self.tasks:
            task.link_error(errback.clone())
        return errback

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        """Calling a group sends it, as in Celery."""
        return self.apply_async(args, kwargs)

    # -- sending --------------------------------------------------------------------------
    # A group freezes to a GroupResult, as in Celery, not to the AsyncResult of one task.
    def freeze(self, _id: str | None = None, *, group_id: str | None = None,  # type: ignore[override]
               group_index: int | None = None, chord: Signature | None = None,
               root_id: str | None = None, parent_id: str | None = None) -> GroupResult:
        """Fix the group's id and every member's; return the GroupResult to come."""
        from djtasks.result import GroupResult

        # ``group_id`` would place this group inside another one; groups are flattened
        # into their parent instead, so only the group's own id matters here.
        own_id = self.options["task_id"] = self.options.get("task_id") or _id or new_task_id()
        results = [
            task.freeze(group_id=own_id, group_index=index, chord=chord, root_id=root_id,
                        parent_id=parent_id)
            for index, task in enumerate(self.tasks)
        ]
        return GroupResult(own_id, results, app=self._app)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, **options: Any) -> GroupResult:
        """Send every member with ``args`` prepended (unless immutable); return a GroupResult."""
        if self.always_eager:
            return self.apply(args, kwargs, **options)
        return self._call_members(args, kwargs, options, eager=False)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> GroupResult:
        """Run every member here and now, in order; return a GroupResult of their outcomes.

        The members' results are eager ones, so the GroupResult answers without the result
        backend. With ``task_eager_propagates`` a failed member raises at once, and the
        members after it do not run.
        """
        return self._call_members(args, kwargs, options, eager=True)

    def _call_members(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
                      options: Mapping[str, Any], eager: bool) -> GroupResult:
        options = {**self.options, **options}
        placement = {key: options.pop(key) for key in PLACEMENT_OPTIONS if key in options}
        if placement.get("chain"):
            raise ValueError("group: a group cannot be followed by more steps here; "
                             "chain(group, task) makes it a chord")
        members = [task.clone(args, kwargs, **_defaults_for(task, options)) for task in self.tasks]
        sending = group(*members, app=self._app, task_id=placement.get("task_id"))
        result = sending.freeze(chord=placement.get("chord"), root_id=options.get("root_id"),
                                parent_id=options.get("parent_id"))
        outcomes = []
        for member in members:
            for callback in signature_list(placement.get("link"), self._app):
                member.link(callback.clone())
            call = member.apply if eager else member.apply_async
            outcomes.append(call(root_id=options.get("root_id"), parent_id=options.get("parent_id")))
        if eager:
            # The frozen results would ask the backend; the eager ones hold their outcome.
            result.results = outcomes
        return result


def _defaults_for(task: Signature, options: Mapping[str, Any]) -> dict[str, Any]:
    # A call option (queue, priority, ...) reaches every member without overriding its own.
    return {key: value for key, value in options.items()
            if key not in task.options and key not in ("root_id", "parent_id")}
