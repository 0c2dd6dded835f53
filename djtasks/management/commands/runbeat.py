"""``manage.py runbeat``: parse the options, build the scheduler, run it (edge layer)."""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import djtasks
from djtasks.beat.service import load_scheduler, run_until_signalled
from djtasks.exceptions import ImproperlyConfigured
from djtasks.management import run_as
from djtasks.worker.logs import LEVELS, configure_logging


class Command(BaseCommand):
    help = "Start djtasks beat: send periodic tasks when they are due (any number may run)."
    requires_system_checks = ["djtasks"]

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("-l", "--loglevel", default="WARNING", type=str.upper, choices=LEVELS,
                            help="logging level")
        parser.add_argument("-S", "--scheduler", default=None,
                            help="dotted path of the scheduler class (default: beat_scheduler)")
        parser.add_argument("--max-interval", type=float, default=None,
                            help="longest sleep between two looks at the schedule, in seconds")
        run_as.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        configure_logging(options["loglevel"])
        run_as.become_configured_user(options)
        try:
            scheduler = load_scheduler(djtasks.app, options["scheduler"], options["max_interval"])
        except (ImproperlyConfigured, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        sys.exit(run_until_signalled(djtasks.app, scheduler, self.stdout))
