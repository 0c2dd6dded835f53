"""``manage.py rundemo``: a worker, the first-steps tasks and their results, then the console.

Unless DEMO_EXIT=1, the demo then keeps its worker running beside beat and ``runserver`` and
prints where the admin is, until Ctrl-C stops all three cleanly.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from demo import console
from demo.tasks import add, mul, slow, xsum
from django.core.management.base import BaseCommand, CommandError

import djtasks
from djtasks import chord, group

ADMIN_ADDRESS = "127.0.0.1:8000"


class Command(BaseCommand):
    help = "Run the djtasks demo: a worker, a few tasks, their results, then the admin console."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=2)

    def handle(self, *args: Any, **options: Any) -> None:
        keep_running = os.environ.get("DEMO_EXIT", "").lower() not in ("1", "true", "yes")
        broker = djtasks.app.settings.censored()["broker_url"]
        self.stdout.write(f"Starting a worker on {broker} ...")
        worker = console.Child("worker", ["runworker", "-l", "INFO", "-c", str(options["concurrency"])])
        try:
            worker.wait_for_line("ready.", self.stdout.write)
            self.send_and_print()
            if keep_running:
                self.serve_console(worker)
        finally:
            code = worker.stop()
        if code != 0:
            raise CommandError(f"the worker exited with status {code}")
        self.stdout.write(self.style.SUCCESS("Worker stopped cleanly (warm shutdown, exit 0)."))

    def serve_console(self, worker: console.Child) -> None:
        """Run beat and runserver beside the worker and wait for Ctrl-C."""
        if console.ensure_demo_user():
            self.stdout.write("Created the admin user demo (password demo).")
        beat = console.Child("beat", ["runbeat", "-l", "INFO"])
        beat.wait_for_line("beat: Starting...", self.stdout.write)
        server = console.Child("runserver", ["runserver", "--noreload", ADMIN_ADDRESS],
                               stop_signal=signal.SIGINT)
        try:
            server.echo_in_background(self.stdout.write)
            console.wait_for_http(f"http://{ADMIN_ADDRESS}/admin/login/", server)
            self.stdout.write(self.style.SUCCESS(
                f"Admin: http://{ADMIN_ADDRESS}/admin/ (user demo, password demo)"))
            self.stdout.write("Worker, beat and runserver are running; Ctrl-C stops them.")
            console.wait_for_interrupt([worker, beat, server])
        finally:
            for child in (server, beat):
                child.stop()

    def send_and_print(self) -> None:
        calls = [
            ("add.delay(4, 4)", add.delay(4, 4)),
            ("mul.delay(8, 8)", mul.delay(8, 8)),
            ("xsum.delay([1, 2, 3, 4])", xsum.delay([1, 2, 3, 4])),
            ("slow.delay(1.5)", slow.delay(1.5)),
            ("(add.s(2, 2) | mul.s(8))()", (add.s(2, 2) | mul.s(8))()),
            ("group(add.s(i, i) ...)()", group(add.s(i, i) for i in range(5))()),
            ("chord(add.s(i, i) ...)(xsum.s())", chord(add.s(i, i) for i in range(10))(xsum.s())),
        ]
        started = time.monotonic()
        for label, result in calls:
            value = result.get(timeout=30)
            took = time.monotonic() - started
            self.stdout.write(self.style.SUCCESS(f"{label:<34} -> {value!r:<16} ({took:.3f}s after sending)"))
