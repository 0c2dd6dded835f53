"""What the chosen pool cannot do that the configuration asks of it, said at start-up (processes layer).

A hard time limit needs a pool that can kill the member running a job (prefork); replacing
members after some tasks or some memory needs one whose members are processes. Asking a
threads or solo worker for either is not an error (soft limits still work, and the same
settings may serve prefork workers elsewhere), but it must not go unsaid: the worker
logs one warning per unmet wish before it says it is ready.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from djtasks.conf import Settings
from djtasks.worker.pools.base import Pool


def unmet_wishes(pool: type[Pool], settings: Settings, tasks: Iterable[Any],
                 max_tasks_per_child: int | None = None,
                 max_memory_per_child: int | None = None) -> list[str]:
    """Return a warning for each limit the configuration sets that ``pool`` cannot enforce."""
    warnings = []
    if not pool.supports_hard_kill:
        sources = []
        if settings.task_time_limit is not None:
            sources.append(f"task_time_limit={settings.task_time_limit:g}")
        sources += [f"{task.name}.time_limit={task.time_limit:g}" for task in tasks
                    if isinstance(getattr(task, "time_limit", None), int | float)]
        if sources:
            warnings.append(
                f"the {pool.name} pool cannot enforce hard time limits ({', '.join(sources)}): "
                f"a task past its limit runs on; soft time limits still apply. Use the "
                f"prefork pool to enforce them.")
    if not pool.supports_recycling:
        asked = [f"{name}={value}" for name, value in (
            ("max_tasks_per_child", max_tasks_per_child),
            ("max_memory_per_child", max_memory_per_child)) if value is not None]
        if asked:
            warnings.append(f"the {pool.name} pool does not replace its members: "
                            f"{', '.join(asked)} is ignored. Use the prefork pool.")
    return warnings
