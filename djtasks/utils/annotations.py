"""task_annotations: options that settings give tasks by name, glob or callable (pure layer).

``task_annotations`` is a dict, a callable, an object with an ``annotate(task)`` method, a
dotted path to one of those, or a list of them::

    DJTASKS = {"task_annotations": {"*": {"max_retries": 5}, "shop.tasks.*": {"rate_limit": "10/s"},
                                    "shop.tasks.charge": {"acks_late": True}}}

In a dict, ``*`` applies to every task, other glob patterns to the names they match, and an
exact name to that task; the more specific wins (``*``, then patterns, then the name). A
callable gets the task and returns a dict of options or None. Later entries of a list win
over earlier ones. Annotations win over the decorator's and the base class's options.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

from django.utils.module_loading import import_string


def annotation_options(annotations: Any, task: Any) -> dict[str, Any]:
    """Return the options ``annotations`` give ``task`` (an object with a ``name``)."""
    options: dict[str, Any] = {}
    for entry in _entries(annotations):
        options.update(_options_of(entry, task))
    return options


def _entries(annotations: Any) -> list[Any]:
    if annotations is None:
        return []
    if isinstance(annotations, list | tuple):
        return [_resolve(entry) for entry in annotations]
    return [_resolve(annotations)]


def _resolve(entry: Any) -> Any:
    if isinstance(entry, str):
        try:
            return import_string(entry)
        except ImportError as exc:
            raise ValueError(f"task_annotations: cannot import {entry!r}: {exc}") from exc
    if isinstance(entry, Mapping) or callable(entry) or hasattr(entry, "annotate"):
        return entry
    raise TypeError(f"task_annotations: expected a dict, a callable, an object with annotate() "
                    f"or a dotted path, got {entry!r}")


def _options_of(entry: Any, task: Any) -> dict[str, Any]:
    if isinstance(entry, Mapping):
        return _from_mapping(entry, task.name)
    annotate: Callable[[Any], Any] = getattr(entry, "annotate", entry)
    found = annotate(task)
    if found is None:
        return {}
    if not isinstance(found, Mapping):
        raise TypeError(f"task_annotations: {entry!r} must return a dict or None, got {found!r}")
    return dict(found)


def _from_mapping(entry: Mapping[str, Any], name: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    patterns = [key for key in entry if key != "*" and key != name and _is_glob(key)]
    for key in ["*", *sorted(patterns, key=len), name]:
        if key in entry and (key == name or fnmatch.fnmatchcase(name, key)):
            value = entry[key]
            if not isinstance(value, Mapping):
                raise TypeError(f"task_annotations[{key!r}]: expected a dict of options, got {value!r}")
            options.update(value)
    return options


def _is_glob(key: str) -> bool:
    return any(char in key for char in "*?[")


def annotated_copy(task: Any, options: Mapping[str, Any]) -> Any:
    """Return an instance of a subclass of ``type(task)`` with ``options`` as class attributes.

    A copy, not a change to the task's class: a task is shared by every app, and each app's
    annotations are its own.
    """
    cls = type(task)
    attrs = {**options, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
             "__doc__": cls.__doc__}
    return type(cls.__name__, (cls,), attrs)()
