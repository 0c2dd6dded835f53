"""``djtasks purge``, ``call`` and ``result``: messages and results from the shell (edge layer).

As Celery's ``purge``, ``call`` and ``result``: delete waiting messages (after asking,
unless ``-f``), publish a task by name and print its id, print a task's result.
"""

from __future__ import annotations

import json
from argparse import ArgumentTypeError, _SubParsersAction
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError

from djtasks import states
from djtasks.application import App


def add_parsers(sub: _SubParsersAction) -> None:
    """Add ``purge``, ``call`` and ``result`` to the ``djtasks`` command."""
    purge = sub.add_parser("purge", help="delete the messages waiting in queues",
                           description="Delete every message waiting in the queues (default: the "
                                       "default queue). Tasks a worker has reserved still run.")
    purge.add_argument("-Q", "--queues", type=_names, default=None,
                       help="comma-separated queue names (default: task_default_queue)")
    purge.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")

    call = sub.add_parser("call", help="publish a task by name and print its id",
                          description="Publish a call of a task by its name (it need not be "
                                      "importable here) and print the task id.")
    call.add_argument("name", help="the task's name, e.g. demo.tasks.add")
    # dest: Django keeps "args" for the command's own positional arguments.
    call.add_argument("-a", "--args", dest="call_args", type=_json(list), default=[],
                      help="positional arguments as a JSON list, e.g. '[2, 2]'")
    call.add_argument("-k", "--kwargs", type=_json(dict), default={},
                      help="keyword arguments as a JSON object, e.g. '{\"x\": 1}'")
    call.add_argument("--countdown", type=float, default=None, help="run it this many seconds from now")
    call.add_argument("--eta", type=datetime.fromisoformat, default=None,
                      help="run it at this ISO 8601 time, e.g. 2030-01-01T12:00:00+00:00")
    call.add_argument("--expires", type=float, default=None,
                      help="seconds after which it is not run any more")
    call.add_argument("-Q", "--queue", default=None, help="the queue to send it to (default: routed)")

    result = sub.add_parser("result", help="print a task's result (or its state if not ready)",
                            description="Print the result of a task, by id, from the result backend.")
    result.add_argument("task_id")
    result.add_argument("--traceback", action="store_true", help="print the traceback of a failure")


def purge(app: App, options: dict[str, Any], out: Any) -> None:
    """Delete the messages of the named queues, after asking unless ``--force``."""
    queues = options["queues"] or [app.settings.task_default_queue]
    if not options["force"]:
        answer = input(f"Delete every message waiting in {', '.join(queues)}? "
                     f"This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise CommandError("nothing purged")
    counts = app.control.purge(queues)
    for name, count in counts.items():
        out.write(f"Deleted {count} {'message' if count == 1 else 'messages'} from {name}.")
    total = sum(counts.values())
    out.write(f"Purged {total} {'message' if total == 1 else 'messages'} from "
              f"{len(counts)} {'queue' if len(counts) == 1 else 'queues'}.")


def call(app: App, options: dict[str, Any], out: Any) -> None:
    """Publish ``options["name"]`` and print the new task's id."""
    chosen = {key: options[key] for key in ("countdown", "eta", "expires", "queue")
              if options[key] is not None}
    result = app.send_task(options["name"], args=options["call_args"], kwargs=options["kwargs"], **chosen)
    out.write(result.id)


def result(app: App, options: dict[str, Any], out: Any) -> None:
    """Print the task's result, its traceback (``--traceback``), or its state if not ready."""
    found = app.AsyncResult(options["task_id"])
    state = found.state
    if options["traceback"]:
        out.write(found.traceback or "")
    elif state not in states.READY_STATES:
        out.write(state)
    elif state != states.SUCCESS:
        raise CommandError(f"{state}: {found.result!r}")
    else:
        value = found.result
        out.write(value if isinstance(value, str) else json.dumps(value, indent=4, default=repr))


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _json(kind: type) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ArgumentTypeError(f"expected JSON, got {value!r}: {exc}") from None
        if not isinstance(parsed, kind):
            raise ArgumentTypeError(f"expected a JSON {'list' if kind is list else 'object'}, "
                                    f"got {value!r}")
        return parsed

    return parse
