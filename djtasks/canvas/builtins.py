"""The built-in tasks behind map, starmap and chunks, under Celery's names (client layer).

They are shared tasks, so every App has them and a Celery client's ``add.map(...)`` runs
on a djtasks worker as it would on Celery's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from djtasks.application import shared_task
from djtasks.canvas.chunks import chunks
from djtasks.canvas.signature import Signature


@shared_task(name="celery.map")
def map_task(task: Mapping[str, Any], it: Iterable[Any]) -> list[Any]:
    """Run ``task`` with each item as its one argument, here, in order."""
    run = Signature.from_dict(task).type
    return [run(item) for item in it]


@shared_task(name="celery.starmap")
def starmap_task(task: Mapping[str, Any], it: Iterable[Any]) -> list[Any]:
    """Run ``task`` with each item as its argument list, here, in order."""
    run = Signature.from_dict(task).type
    return [run(*item) for item in it]


@shared_task(name="celery.chunks")
def chunks_task(task: Mapping[str, Any], it: Iterable[Any], n: int) -> list[str]:
    """Send ``it`` as a group of starmaps of ``n`` items each; return their task ids."""
    result = chunks(task, it, n).apply_async()
    return [member.id for member in result.results]
