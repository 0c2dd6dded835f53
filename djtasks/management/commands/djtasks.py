"""``manage.py djtasks <subcommand>``: inspect and manage djtasks (edge layer)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import djtasks
from djtasks.conf import OPTIONS
from djtasks.control import Replies, describe
from djtasks.worker import monitor


class Command(BaseCommand):
    help = ("djtasks administration: 'config' prints the effective configuration; 'route' "
            "prints where a task name goes now and why; 'control' and 'inspect' send commands "
            "to the running workers and print their answers.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        config = sub.add_parser("config", help="print the effective configuration, secrets censored")
        config.add_argument("--json", action="store_true", help="print as JSON")
        route = sub.add_parser("route", help="print the route a task name gets now, and its sources")
        route.add_argument("task_name", help="the task's name, e.g. reports.tasks.build")
        control = sub.add_parser("control", help="send a command to the workers")
        commands = control.add_subparsers(dest="command", required=True, metavar="command")
        _worker_options(commands.add_parser("ping", help="every worker answers pong"))
        rate = commands.add_parser("rate_limit", help="set a task's rate limit on the workers")
        rate.add_argument("task_name", help="the task's name, e.g. demo.tasks.add")
        rate.add_argument("rate_limit", help="e.g. 10/s, 100/m, 5/h; 0 removes the limit")
        _worker_options(rate)
        revoke = commands.add_parser("revoke", help="revoke task ids (stored: later workers skip them)")
        revoke.add_argument("task_ids", nargs="+", metavar="task_id")
        revoke.add_argument("--terminate", action="store_true", help="also stop it where it runs")
        revoke.add_argument("--signal", default="SIGTERM", help="with --terminate (default SIGTERM)")
        _worker_options(revoke)
        inspect = sub.add_parser("inspect", help="ask the workers a question")
        questions = inspect.add_subparsers(dest="command", required=True, metavar="question")
        _worker_options(questions.add_parser("ping", help="every worker answers pong"))
        _worker_options(questions.add_parser("registered", help="each worker's task names"))
        _add_events_parser(sub)
        _add_status_parser(sub)
        _worker_options(questions.add_parser("active_queues", help="the queues each worker consumes"))

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] == "config":
            self.print_config(as_json=options["json"])
        elif options["subcommand"] == "route":
            for line in djtasks.app.explain_route(options["task_name"]).lines():
                self.stdout.write(line)
        elif options["subcommand"] in ("control", "inspect"):
            self.print_replies(self.send(options), options["timeout"])
        elif options["subcommand"] == "events":
            self.events(options)
        elif options["subcommand"] == "status":
            self.status_all(options)

    def events(self, options: dict[str, Any]) -> None:
        """``djtasks events --dump``: print the event stream until interrupted."""
        try:
            monitor.dump_events(djtasks.app, self._write_flushed, timeout=options["timeout"])
        except KeyboardInterrupt:
            pass

    def status_all(self, options: dict[str, Any]) -> None:
        """``djtasks status --all``: every Worker row, read from the database."""
        if not options["all"]:
            raise CommandError("status: only --all (the Worker rows) is available here")
        for line in monitor.describe_workers(monitor.worker_statuses()):
            self.stdout.write(line)

    def _write_flushed(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def send(self, options: dict[str, Any]) -> Replies | None:
        control, command = djtasks.app.control, options["command"]
        where = {"destination": options["destination"], "timeout": options["timeout"]}
        if command == "rate_limit":
            return control.rate_limit(options["task_name"], options["rate_limit"], reply=True, **where)
        if command == "revoke":
            replies = control.revoke(options["task_ids"], terminate=options["terminate"],
                                     signal=options["signal"], reply=True, **where)
            self.stdout.write(f"revoked: {', '.join(options['task_ids'])}")
            return replies
        return control.broadcast(command, reply=True, **where)

    def print_replies(self, replies: Replies | None, timeout: float) -> None:
        if replies is None:
            return  # a plain revoke: stored, no worker is asked
        if not replies:
            raise CommandError(f"no worker answered within {timeout:g} s")
        for line in describe(replies):
            self.stdout.write(line)

    def print_config(self, as_json: bool) -> None:
        values = djtasks.app.settings.censored()
        if as_json:
            self.stdout.write(json.dumps(values, indent=2, sort_keys=True, default=repr))
            return
        width = max(len(key) for key in values)
        for key in sorted(values):
            marker = " " if values[key] == OPTIONS[key].default else "*"
            self.stdout.write(f"{marker} {key:<{width}} = {values[key]!r}")
        self.stdout.write("\n* differs from the default")


def _add_events_parser(sub: Any) -> None:
    events = sub.add_parser("events", help="print the workers' events as they come")
    events.add_argument("--dump", action="store_true", required=True,
                        help="print each event as one line (the only mode)")
    events.add_argument("--timeout", type=float, default=None,
                        help="stop after this many seconds (default: run until interrupted)")


def _add_status_parser(sub: Any) -> None:
    status = sub.add_parser("status", help="which workers are online")
    status.add_argument("--all", action="store_true",
                        help="every Worker row of the database, with its status and heartbeat age")


def _worker_options(parser: ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=1.0,
                        help="seconds to wait for an answer (default 1)")
    parser.add_argument("-d", "--destination", type=_hostnames, default=None,
                        help="comma-separated worker hostnames (default: every worker)")


def _hostnames(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]
