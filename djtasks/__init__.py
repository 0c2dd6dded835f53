"""djtasks: background jobs for Django, with Celery's API and wire protocol.

Public names only. ``djtasks.app`` is the default App, built from ``settings.DJTASKS`` the
first time it is used (module ``__getattr__``), never at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from djtasks.application import App, default_app, shared_task
from djtasks.canvas import (
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    xmap,
    xstarmap,
)
from djtasks.canvas import builtins as _builtins  # noqa: F401 - registers celery.map, starmap, chunks
from djtasks.registry import use_default_app
from djtasks.result import AsyncResult, EagerResult, GroupResult
from djtasks.task import Task

if TYPE_CHECKING:
    app: App

__version__ = "0.1.0"
__all__ = [
    "App", "AsyncResult", "EagerResult", "GroupResult", "Signature", "Task", "app", "chain", "chord",
    "chunks", "group", "maybe_signature", "shared_task", "signature", "task", "xmap", "xstarmap",
]

# What is made without an app (Celery's AsyncResult(id), signature("name")) finds the
# default one through this, built on first use: the package root is the edge that knows it.
use_default_app(default_app)

#: ``@task`` and ``@shared_task`` are one decorator; both names are kept for Celery users.
task = shared_task


def __getattr__(name: str) -> Any:
    if name == "app":
        return default_app()
    raise AttributeError(f"module 'djtasks' has no attribute {name!r}")
