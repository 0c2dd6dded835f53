"""``manage.py runworker``: parse the options, build a Worker, run it (edge layer)."""

from __future__ import annotations

import sys
from argparse import ArgumentParser, ArgumentTypeError, BooleanOptionalAction
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import djtasks
from djtasks.exceptions import OperationalError
from djtasks.management import run_as
from djtasks.worker.autoscale import parse_autoscale
from djtasks.worker.logs import LEVELS, configure_logging
from djtasks.worker.pools import POOLS
from djtasks.worker.worker import Worker


class Command(BaseCommand):
    help = "Start a djtasks worker: consume task messages and run them."
    requires_system_checks = ["djtasks"]

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("-Q", "--queues", default=None,
                            help="comma-separated queues to consume (default: task_default_queue)")
        parser.add_argument("-c", "--concurrency", type=int, default=None,
                            help="pool size (default: worker_concurrency, else the number of CPUs)")
        parser.add_argument("-P", "--pool", choices=sorted(POOLS), default=None,
                            help="execution pool (default: worker_pool, prefork)")
        parser.add_argument("-n", "--hostname", default=None,
                            help="node name; %%h host, %%n host's first label, %%d domain")
        parser.add_argument("-l", "--loglevel", default="WARNING",
                            type=str.upper, choices=LEVELS, help="logging level")
        parser.add_argument("--prefetch-multiplier", type=int, default=None,
                            help="messages reserved per pool slot (default: 4)")
        parser.add_argument("--consume-in-children", action=BooleanOptionalAction,
                            default=None,
                            help="prefork: each child consumes from the broker itself and the "
                                 "parent supervises; --no-consume-in-children: the parent feeds "
                                 "the children (default: worker_consume_in_children)")
        parser.add_argument("-B", "--beat", action="store_true",
                            help="also run beat (periodic tasks) in this process")
        parser.add_argument("-E", "--events", action="store_true", default=None,
                            help="send task events (default: worker_send_task_events)")
        parser.add_argument("--max-tasks-per-child", type=int, default=None,
                            help="prefork: replace a pool process after this many tasks "
                                 "(default: worker_max_tasks_per_child)")
        parser.add_argument("--max-memory-per-child", type=int, default=None,
                            help="prefork: replace a pool process whose resident memory is over "
                                 "this many KiB after a task (default: worker_max_memory_per_child)")

        parser.add_argument("--autoscale", type=_autoscale, default=None, metavar="MAX,MIN",
                            help="grow the pool up to MAX processes while tasks wait, and "
                                 "shrink it back to MIN once idle (e.g. 10,3)")
        run_as.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        configure_logging(options["loglevel"])
        run_as.become_configured_user(options)
        queues = [q.strip() for q in options["queues"].split(",") if q.strip()] \
            if options["queues"] else None
        try:
            worker = Worker(djtasks.app, queues=queues, concurrency=options["concurrency"],
                            pool=options["pool"], hostname=options["hostname"],
                            prefetch_multiplier=options["prefetch_multiplier"],
                            beat=options["beat"], autoscale=options["autoscale"],
                            task_events=options["events"],
                            consume_in_children=options["consume_in_children"],
                            max_tasks_per_child=options["max_tasks_per_child"],
                            max_memory_per_child=options["max_memory_per_child"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            code = worker.run(out=self.stdout)
        except OperationalError as exc:
            raise CommandError(str(exc)) from exc
        sys.exit(code)


def _autoscale(value: str) -> tuple[int, int]:
    try:
        return parse_autoscale(value)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from exc
