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


SUBCOMMANDS = {
    "config": config,
    "inspect": remote.remote,
    "control": remote.remote,
    "status": remote.status,
    "purge": messages.purge,
    "call": messages.call,
    "result": messages.result,
}


class Command(BaseCommand):
    help = ("djtasks administration: 'config' prints the effective configuration; 'inspect', "
            "'control' and 'status' talk to the running workers; 'purge', 'call' and 'result' "
            "work on queues and results. Add --help after a subcommand for its options.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        config_parser = sub.add_parser("config", help="print the effective configuration, secrets censored")
        config_parser.add_argument("--json", action="store_true", help="print as JSON")
        remote.add_parsers(sub)
        messages.add_parsers(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        SUBCOMMANDS[options["subcommand"]](djtasks.app, options, self.stdout)
