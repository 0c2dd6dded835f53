"""``manage.py rundemo``: start a worker, send the first-steps tasks, print results, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from demo.tasks import add, mul, slow, xsum
from django.core.management.base import BaseCommand, CommandError

import djtasks
from djtasks import chord, group

MANAGE = Path(__file__).resolve().parents[4] / "manage.py"


class Command(BaseCommand):
    help = "Run the djtasks demo: a worker, a few tasks, their results, a clean stop."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=2)

    def handle(self, *args: Any, **options: Any) -> None:
        broker = djtasks.app.settings.censored()["broker_url"]
        self.stdout.write(f"Starting a worker on {broker} ...")
        worker = subprocess.Popen(
            [sys.executable, str(MANAGE), "runworker", "-l", "INFO", "-c", str(options["concurrency"])],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            self.wait_until_ready(worker)
            self.send_and_print()
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
        if code != 0:
            raise CommandError(f"the worker exited with status {code}")
        self.stdout.write(self.style.SUCCESS("Worker stopped cleanly (warm shutdown, exit 0)."))

    def wait_until_ready(self, worker: subprocess.Popen) -> None:
        for line in worker.stderr:
            if line.rstrip().endswith("ready."):
                self.stdout.write(line.rstrip())
                # Keep echoing the worker's log lines, so the demo shows both sides.
                threading.Thread(target=self.echo, args=(worker,), daemon=True).start()
                return
            self.stdout.write(line.rstrip())
        raise CommandError("the worker exited before it was ready")

    def echo(self, worker: subprocess.Popen) -> None:
        for line in worker.stderr:
            self.stdout.write("  worker | " + line.rstrip())

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
