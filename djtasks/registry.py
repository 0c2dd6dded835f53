"""TaskRegistry: the names an app knows, and where the default app is found (client layer).

What is made without an app (a signature of a shared task, ``signature("name")``,
Celery's ``AsyncResult(id)``) belongs to the default app, ``djtasks.app``. Only the
package root (the edge) builds it; it installs its finder here with ``use_default_app``,
so nothing below the edge imports the package to reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from djtasks.exceptions import AlreadyRegistered, NotRegistered

if TYPE_CHECKING:
    from djtasks.application import App
    from djtasks.task import Task

_default_app: Callable[[], App] | None = None


def use_default_app(finder: Callable[[], App]) -> None:
    """Install what ``app_or_default`` calls for an app none was given (the package root does)."""
    global _default_app
    _default_app = finder


def app_or_default(app: App | None) -> App:
    """Return ``app``, or the default app for what was made without one."""
    if app is not None:
        return app
    if _default_app is None:
        raise RuntimeError("no app given, and no default app: import djtasks first")
    return _default_app()


class TaskRegistry(Mapping[str, "Task"]):
    """Name -> task. Registering a second, different task under a taken name is an error."""

    def __init__(self, prepare: Callable[[Task], Task] | None = None) -> None:
        self._tasks: dict[str, Task] = {}
        #: Turns a task into the one this registry keeps (the app's task_annotations).
        self._prepare = prepare

    def __getitem__(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise NotRegistered(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def register(self, task: Task) -> Task:
        """Add ``task`` under its name; the same task twice is a no-op (modules reload)."""
        existing = self._tasks.get(task.name)
        if existing is not None and existing is not task and _origin(existing) != _origin(task):
            raise AlreadyRegistered(
                f"task name {task.name!r} is taken by {_origin(existing)}, cannot register "
                f"{_origin(task)} under it; give one of them another name="
            )
        if self._prepare is not None:
            task = self._prepare(task)
        self._tasks[task.name] = task
        return task

    def unregister(self, name: str) -> None:
        """Remove the task called ``name``."""
        if self._tasks.pop(name, None) is None:
            raise NotRegistered(name)

    def user_tasks(self) -> list[str]:
        """Names of the tasks users defined, without djtasks' own built-ins, sorted."""
        return sorted(name for name in self._tasks if not name.startswith("djtasks."))


def _origin(task: Task) -> str:
    run = type(task).run
    return f"{run.__module__}.{run.__qualname__}"
