"""Run a scheduler as a process (runbeat) or beside a worker (runworker -B) (processes layer)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from io import TextIOBase
from types import FrameType
from typing import TextIO

from djtasks.application import App
from djtasks.backends.sqlite import prepare_sqlite
from djtasks.beat.scheduler import BaseScheduler
from djtasks.conf import censor_url, import_class
from djtasks.exceptions import DatabaseUnavailable

logger = logging.getLogger("djtasks.beat")


def load_scheduler(app: App, path: str | None = None, max_interval: float | None = None
                   ) -> BaseScheduler:
    """Build the scheduler class named by ``path`` (default: the beat_scheduler setting)."""
    # mypy refuses an abstract class for type[T] (python/mypy#4717); here it is only checked against.
    cls = import_class(path or app.settings.beat_scheduler, BaseScheduler,  # type: ignore[type-abstract]
                       "beat_scheduler")
    return cls(app, max_interval=max_interval)


def banner(app: App, scheduler: BaseScheduler) -> str:
    return (
        "djtasks beat is starting.\n"
        f"__    -    ... __   -        _\n"
        f"Configuration ->\n"
        f"    . broker -> {censor_url(app.settings.broker_url)}\n"
        f"    . scheduler -> {type(scheduler).__module__}.{type(scheduler).__qualname__}\n"
        f"    . maxinterval -> {scheduler.max_interval:g} seconds\n"
    )


def run_until_signalled(app: App, scheduler: BaseScheduler, out: TextIO | TextIOBase) -> int:
    """Run ``scheduler`` in this thread until SIGTERM or SIGINT; return the exit status."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("beat: shutting down (%s)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out.write(banner(app, scheduler))
    out.flush()
    prepare_sqlite(app.databases())
    logger.info("beat: Starting...")
    try:
        scheduler.run(stop)
    except DatabaseUnavailable as exc:
        logger.critical("beat: stopping: %s", exc)
        return 1
    finally:
        app.close()
    return 0


class BeatThread:
    """A scheduler running in a thread of another process (``runworker -B``).

    If the scheduler gives up on its database, ``on_fatal`` is called with the error, so
    that the process stops rather than go on without the beat it was asked to run.
    """

    def __init__(self, scheduler: BaseScheduler,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.scheduler = scheduler
        self.on_fatal = on_fatal
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="djtasks-beat", daemon=True)

    def _run(self) -> None:
        try:
            self.scheduler.run(self.stop_event)
        except DatabaseUnavailable as exc:
            logger.critical("beat: stopping: %s", exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread.ident is not None:  # the worker may stop before it started beat
            self.thread.join(timeout)
