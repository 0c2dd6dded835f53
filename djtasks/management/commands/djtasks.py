"""``manage.py djtasks <subcommand>``: inspect and manage djtasks (edge layer).

One function per subcommand; the remote-control ones live in ``management/remote.py``, the
message and result ones in ``management/messages.py``. To add a subcommand: add its parser
in ``add_arguments`` and its function to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

import djtasks
from djtasks.application import App
from djtasks.conf import OPTIONS
from djtasks.management import messages, remote
from djtasks.worker import monitor


def config(app: App, options: dict[str, Any], out: Any) -> None:
    """Print the effective configuration, secrets censored; ``*`` marks what differs from the default."""
    values = app.settings.censored()
    if options["json"]:
        out.write(json.dumps(values, indent=2, sort_keys=True, default=repr))
        return
    width = max(len(key) for key in values)
    for key in sorted(values):
        marker = " " if values[key] == OPTIONS[key].default else "*"
        out.write(f"{marker} {key:<{width}} = {values[key]!r}")
    out.write("\n* differs from the default")


def route(app: App, options: dict[str, Any], out: Any) -> None:
    """Print the route a task name gets now, a line per key with its source."""
    for line in app.explain_route(options["task_name"]).lines():
        out.write(line)


def events(app: App, options: dict[str, Any], out: Any) -> None:
    """Print the event stream, one line an event, until interrupted or ``--timeout``."""
    def write(line: str) -> None:
        out.write(line)
        out.flush()

    try:
        monitor.dump_events(app, write, timeout=options["timeout"])
    except KeyboardInterrupt:
        pass


SUBCOMMANDS = {
    "config": config,
    "route": route,
    "events": events,
    "inspect": remote.remote,
    "control": remote.remote,
    "status": remote.status,
    "purge": messages.purge,
    "call": messages.call,
    "result": messages.result,
}


class Command(BaseCommand):
    help = ("djtasks administration: 'config' prints the effective configuration; 'route' "
            "where a task name goes now and why; 'inspect', 'control' and 'status' talk to the "
            "running workers; 'events' prints their events; 'purge', 'call' and 'result' work "
            "on queues and results. Add --help after a subcommand for its options.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        config_parser = sub.add_parser("config", help="print the effective configuration, secrets censored")
        config_parser.add_argument("--json", action="store_true", help="print as JSON")
        route_parser = sub.add_parser("route", help="print the route a task name gets now, and its sources")
        route_parser.add_argument("task_name", help="the task's name, e.g. reports.tasks.build")
        remote.add_parsers(sub)
        events_parser = sub.add_parser("events", help="print the workers' events as they come")
        events_parser.add_argument("--dump", action="store_true", required=True,
                                   help="print each event as one line (the only mode)")
        events_parser.add_argument("--timeout", type=float, default=None,
                                   help="stop after this many seconds (default: until interrupted)")
        messages.add_parsers(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        SUBCOMMANDS[options["subcommand"]](djtasks.app, options, self.stdout)
