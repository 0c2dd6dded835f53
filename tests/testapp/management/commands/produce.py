"""``manage.py produce``: keep sending a task, a log line per send, for integration tests."""

from __future__ import annotations

import sys
import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

import djtasks


class Command(BaseCommand):
    help = "Send --task every --interval seconds for at most --seconds; print 'sent <time> <id>'."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("-l", "--loglevel", default="INFO")  # as start_command passes it
        parser.add_argument("--task", default="tests.testapp.tasks.add")
        parser.add_argument("--interval", type=float, default=0.05)
        parser.add_argument("--seconds", type=float, default=300.0)

    def handle(self, *args: Any, **options: Any) -> None:
        sys.stderr.write("producer ready\n")
        deadline = time.monotonic() + options["seconds"]
        number = 0
        while time.monotonic() < deadline:
            number += 1
            result = djtasks.app.send_task(options["task"], (number, 0))
            sys.stderr.write(f"sent {time.time():.3f} {result.id}\n")
            sys.stderr.flush()
            time.sleep(options["interval"])
