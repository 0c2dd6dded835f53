"""``djtasks inspect``, ``control`` and ``status``: the remote-control command line (edge layer).

Celery's command names, arguments and output: each worker's answer prints as
``-> name@host: OK`` followed by the answer indented, or ``--json`` prints all answers as one
JSON object by hostname. The commands themselves are sent by ``djtasks.control``.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser, _SubParsersAction
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import CommandError

from djtasks.application import App
from djtasks.control import Replies, describe, merged
from djtasks.worker import monitor


@dataclass(frozen=True)
class Remote:
    """One remote command: its help, and its arguments (``dest`` names are Celery's)."""

    help: str
    arguments: tuple[tuple[str, dict[str, Any]], ...] = field(default=())


INSPECT = {
    "ping": Remote("every worker answers pong"),
    "registered": Remote("each worker's task names, with their rate limits when set", (
        ("taskinfoitems", {"nargs": "*", "metavar": "attribute",
                           "help": "task attributes to show beside each name, e.g. rate_limit"}),)),
    "active": Remote("the tasks each worker is running now"),
    "reserved": Remote("the tasks each worker received and has not started yet"),
    "scheduled": Remote("the tasks due later (eta/countdown) each worker holds or sees parked"),
    "revoked": Remote("the task ids each worker knows revoked"),
    "stats": Remote("each worker's pid, uptime, pool, broker, prefetch count and totals"),
    "active_queues": Remote("the queues each worker consumes"),
    "conf": Remote("each worker's settings, secrets censored"),
    "query_task": Remote("where the given tasks are: active, reserved or scheduled", (
        ("ids", {"nargs": "+", "metavar": "task_id"}),)),
    "report": Remote("each worker's versions and settings, for a bug report"),
}

CONTROL = {
    "ping": Remote("every worker answers pong"),
    "rate_limit": Remote("set a task's rate limit on the workers", (
        ("task_name", {"help": "the task's name, e.g. demo.tasks.add"}),
        ("rate_limit", {"help": "e.g. 10/s, 100/m, 5/h; 0 removes the limit"}))),
    "time_limit": Remote("set a task's time limits (seconds) on the workers, for its next runs", (
        ("task_name", {"help": "the task's name"}),
        ("soft", {"type": float, "help": "soft limit: SoftTimeLimitExceeded is raised"}),
        ("hard", {"type": float, "nargs": "?", "default": None,
                  "help": "hard limit: the process is killed (prefork)"}))),
    "revoke": Remote("revoke task ids (stored: every worker skips them, even later ones)", (
        ("task_ids", {"nargs": "+", "metavar": "task_id"}),
        ("--terminate", {"action": "store_true", "help": "also stop it where it runs (prefork)"}),
        ("--signal", {"default": "SIGTERM", "help": "with --terminate (default SIGTERM)"}))),
    "add_consumer": Remote("make the workers consume a queue too, at once", (
        ("queue", {}), ("exchange", {"nargs": "?", "default": None}),
        ("exchange_type", {"nargs": "?", "default": None}),
        ("routing_key", {"nargs": "?", "default": None}))),
    "cancel_consumer": Remote("make the workers stop consuming a queue", (("queue", {}),)),
    "pool_grow": Remote("add processes (threads) to the workers' pools", (
        ("n", {"type": int, "nargs": "?", "default": 1}),)),
    "pool_shrink": Remote("remove processes (threads) from the pools, each after its task", (
        ("n", {"type": int, "nargs": "?", "default": 1}),)),
    "autoscale": Remote("change the bounds of workers started with --autoscale", (
        ("max", {"type": int}), ("min", {"type": int}))),
    "pool_restart": Remote("replace the pools' processes (needs worker_pool_restarts)", (
        ("--modules", {"type": lambda v: [m.strip() for m in v.split(",") if m.strip()],
                       "default": None, "help": "comma-separated task modules to reload"}),
        ("--reload", {"action": "store_true", "help": "reload --modules before restarting"}))),
    "shutdown": Remote("shut the workers down warm: running tasks finish, reserved ones go back"),
}


def add_parsers(sub: _SubParsersAction) -> None:
    """Add ``inspect``, ``control`` and ``status`` to the ``djtasks`` command."""
    for name, table, title, text in (
            ("inspect", INSPECT, "question", "ask the workers a question and print their answers"),
            ("control", CONTROL, "command", "send the workers a command and print their answers")):
        parser = sub.add_parser(name, help=text, description=text)
        commands = parser.add_subparsers(dest="command", required=True, metavar=title)
        for command, remote in table.items():
            one = commands.add_parser(command, help=remote.help, description=remote.help)
            for dest, options in remote.arguments:
                one.add_argument(dest, **options)
            worker_options(one)
    status = sub.add_parser("status", help="list the workers that answer a ping",
                            description="List the workers that answer a ping, then how many.")
    worker_options(status)
    status.add_argument("--all", action="store_true",
                        help="every worker of the database's Worker table, with its status (online, "
                             "offline, lost) and heartbeat age, whether it answers or not")


def worker_options(parser: ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=1.0,
                        help="seconds to wait for the answers (default 1)")
    parser.add_argument("-d", "--destination", type=_hostnames, default=None,
                        help="comma-separated worker names (default: every worker)")
    parser.add_argument("--json", action="store_true", help="print the answers as one JSON object")


def remote(app: App, options: dict[str, Any], out: Any) -> None:
    """Send ``inspect``/``control`` ``options["command"]`` and print the answers."""
    table = INSPECT if options["subcommand"] == "inspect" else CONTROL
    command = options["command"]
    where = {"destination": options["destination"], "timeout": options["timeout"], "reply": True}
    arguments = {dest.lstrip("-"): options[dest.lstrip("-")] for dest, _ in table[command].arguments}
    if command == "revoke":
        replies = app.control.revoke(arguments["task_ids"], terminate=arguments["terminate"],
                                     signal=arguments["signal"], **where)
        out.write(f"revoked: {', '.join(arguments['task_ids'])}")
        if replies is None:
            return  # a plain revoke is stored: no worker is asked
    else:
        replies = app.control.broadcast(command, arguments, **where)
    print_replies(replies or [], options, out)


def status(app: App, options: dict[str, Any], out: Any) -> None:
    """Print the workers that answer a ping, then ``N nodes online.``; ``--all``: every Worker row."""
    if options.get("all"):
        for line in monitor.describe_workers(monitor.worker_statuses()):
            out.write(line)
        return
    replies = app.control.ping(destination=options["destination"], timeout=options["timeout"])
    print_replies(replies, options, out, show_reply=False)
    if not options["json"]:
        count = len(merged(replies))
        out.write(f"\n{count} {'node' if count == 1 else 'nodes'} online.")


def print_replies(replies: Replies, options: dict[str, Any], out: Any, show_reply: bool = True) -> None:
    if not replies:
        raise CommandError(f"no worker answered within {options['timeout']:g} s")
    if options["json"]:
        out.write(json.dumps(merged(replies), sort_keys=True, default=repr))
        return
    for line in describe(replies, show_reply=show_reply):
        out.write(line)


def _hostnames(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]
