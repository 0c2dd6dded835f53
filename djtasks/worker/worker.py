"""Worker: boot, consume until told to stop, then shut down warm or cold (processes layer).

Shutdown, as in Celery: the first SIGTERM or SIGINT starts a warm shutdown (receive nothing
more, give reserved messages back, let running tasks finish, exit 0); a second one, or
SIGQUIT, a cold shutdown (kill running tasks now; unacknowledged messages return to the
broker, exit 1).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from io import TextIOBase
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any, NoReturn, TextIO

from django.db import DatabaseError

from djtasks import signals
from djtasks.application import App
from djtasks.backends.outages import Outage
from djtasks.backends.sqlite import prepare_sqlite
from djtasks.beat.service import BeatThread, load_scheduler
from djtasks.conf import Settings
from djtasks.exceptions import DatabaseUnavailable, OperationalError
from djtasks.transport.aliases import broker_alias
from djtasks.utils.rates import Bucket
from djtasks.worker.autoscale import Autoscaler
from djtasks.worker.banner import banner
from djtasks.worker.capabilities import unmet_wishes
from djtasks.worker.consumer import Consumer
from djtasks.worker.control import WorkerControl
from djtasks.worker.events import EventSender, TaskEvents
from djtasks.worker.executor import Executor
from djtasks.worker.features import Feature
from djtasks.worker.fleet import control as fleet_control
from djtasks.worker.fleet.child import run_child
from djtasks.worker.fleet.clock import SharedClock
from djtasks.worker.fleet.orphans import SETTLED_BY_TAG, ByTag
from djtasks.worker.fleet.rates import SharedBuckets
from djtasks.worker.fleet.supervisor import Fleet
from djtasks.worker.heartbeat import Heartbeat, WorkerInfo
from djtasks.worker.pools import POOLS, Outcome, Pool
from djtasks.worker.release import EtaRelease

logger = logging.getLogger("djtasks.worker")


class ColdShutdown(BaseException):
    """Raised from a signal handler to abandon whatever the main thread is doing."""


class Worker:
    """One worker process: a consumer in the main thread feeding a pool of executors."""

    def __init__(self, app: App, *, queues: Sequence[str] | None = None,  # noqa: PLR0913 - a keyword per runworker flag
                 concurrency: int | None = None, pool: str | None = None,
                 hostname: str | None = None, prefetch_multiplier: int | None = None,
                 beat: bool = False, autoscale: tuple[int, int] | None = None,
                 task_events: bool | None = None, consume_in_children: bool | None = None,
                 remote_control: bool = True, extra_features: Sequence[Feature] = (),
                 rate_buckets: Callable[[str, float], Bucket] | None = None,
                 **recycling: int | None) -> None:
        settings = app.settings
        self.app = app
        self.queues = list(queues or [settings.task_default_queue])
        self.concurrency = concurrency or settings.worker_concurrency or os.cpu_count() or 1
        if autoscale is not None:  # (max, min): start with min, reserve for max
            self.concurrency = autoscale[1]
        self.pool_name = pool or settings.worker_pool
        if self.pool_name not in POOLS:
            raise ValueError(f"pool: expected one of {sorted(POOLS)}, got {self.pool_name!r}")
        if self.pool_name == "solo":
            self.concurrency = 1
        self.hostname = expand_hostname(hostname or "djtasks@%h")
        multiplier = max(prefetch_multiplier or settings.worker_prefetch_multiplier, 1)
        self.prefetch_count = (autoscale[0] if autoscale else self.concurrency) * multiplier
        self.stopping = False
        # Where a pool member's loop confirms the writes: the solo pool's is the consumer's,
        # a prefork child's calls Executor.idle (the threads pool's has no such point).
        executor = Executor(app, confirm_results_later=self.pool_name in ("solo", "prefork"))
        forks = self.pool_name == "prefork"
        # max_tasks_per_child and max_memory_per_child (KiB): given, else the settings.
        self.recycling = {key: recycling.pop(key, None) or settings[f"worker_{key}"]
                          for key in ("max_tasks_per_child", "max_memory_per_child")}
        if recycling:
            raise TypeError(f"Worker() got unexpected options {sorted(recycling)}")
        self.fleet: Fleet | None = None
        if forks and children_consume(settings, consume_in_children, autoscale):
            self.pool: Pool = self._make_fleet(autoscale, multiplier, task_events)
        else:
            # Prefork: a request per child waits in the parent, so that a child that is done
            # gets the next at once instead of after a round trip through this process's loop.
            backlog = {"backlog_per_child": 1} if forks else {}
            self.pool = POOLS[self.pool_name](self.concurrency, executor,
                                              on_process_init=executor.after_fork if forks else None,
                                              **self.recycling, **backlog)
        self.executor = executor
        self.events = EventSender(
            app.connection, self.hostname, buffer=settings.worker_event_buffer,
            task_events=settings.worker_send_task_events if task_events is None else task_events,
            worker_events=settings.worker_send_worker_events,
            database=broker_alias(settings.broker_url))
        if self.fleet is not None:  # parent and children send events under one name
            self.events.clock = SharedClock()
        self.consumer = Consumer(app, self.pool, self.queues, self.hostname, self.prefetch_count,
                                 events=TaskEvents(self.events), extra_features=extra_features,
                                 consume_tasks=self.fleet is None, rate_buckets=rate_buckets)
        self.consumer.prefetch_multiplier = multiplier
        if self.fleet is not None:
            self.fleet.stats = self.consumer.stats  # what the heartbeat reports: the children's
        self.heartbeat = Heartbeat(
            WorkerInfo(self.hostname, self.pool_name, self.concurrency, self.queues),
            self.events, self.consumer.stats, settings.worker_heartbeat_interval)
        self.autoscaler = None if autoscale is None else Autoscaler(
            self.consumer, *autoscale, keepalive=settings.worker_autoscale_keepalive)
        self.control = WorkerControl(self.consumer, self.hostname, self.heartbeat,
                                     on_shutdown=self.request_stop)
        self.control.autoscaler = self.autoscaler
        if self.fleet is not None:
            fleet_control.wire(self.control, self.fleet)
        if settings.worker_enable_remote_control and remote_control:
            self.consumer.on_connect.append(self.control.listen)
        #: Called between two rounds of the consume loop, in its thread.
        self.between_steps: list[Callable[[], None]] = []
        self.beat = BeatThread(load_scheduler(app), on_fatal=self.stop_on) if beat else None
        self.fatal: BaseException | None = None
        self.eta_release = EtaRelease(app, self.hostname)

    def run(self, out: TextIO | TextIOBase | None = None) -> int:
        """Run until shut down; return the process exit status."""
        out = out or sys.stdout
        self.install_signal_handlers()
        cold = False
        signals.worker_init.send_robust(sender=self)
        for warning in unmet_wishes(type(self.pool), self.app.settings, self.app.tasks.values(),
                                    **self.recycling):
            logger.warning("worker: %s", warning)
        try:
            prepare_sqlite(self.app.databases())
            self.pool.start()
            self.connect()
            self.events.start()
            self.heartbeat.start()
            out.write(banner(self))
            out.flush()
            if self.beat is not None:
                self.beat.start()
            self.eta_release.start()
            self.consumer.settle()  # "ready" means remote control reaches it (Redis: subscribed)
            logger.info("%s ready.", self.hostname)
            signals.worker_ready.send_robust(sender=self.consumer)
            self.consume_until_stopped()
            if self.fatal is not None:
                raise self.fatal
            self.warm_shutdown()
        except ColdShutdown:
            cold = True
            self.cold_shutdown()
            return 1
        except DatabaseUnavailable as exc:
            logger.critical("worker: stopping: %s", exc)
            cold = True
            self.cold_shutdown()
            return 1
        finally:
            signals.worker_shutdown.send_robust(sender=self)
            self.heartbeat.stop(offline=not cold)
            self.events.stop(timeout=1.0 if cold else 5.0)
            self.eta_release.stop()
            if self.beat is not None:
                self.beat.stop()
            if cold:
                # The signal may have interrupted the broker client mid-frame: a polite
                # close could wait forever for a reply it can no longer parse.
                self.consumer.abandon()
            else:
                self.control.close()
                self.consumer.close()
            self.app.close()
        return 0

    def connect(self) -> None:
        """Connect the consumer; on django:// a database that is not up yet is waited for."""
        outage = Outage("worker", self.app.settings.database_retry_timeout, log=logger)
        while True:
            try:
                self.consumer.connect()
            except DatabaseError as exc:
                self.pause(outage.failed(exc))
            else:
                outage.succeeded()
                return

    def consume_until_stopped(self) -> None:
        """Run the consumer's loop; a lost broker connection is made again, not fatal.

        A database error (on django:// the database is the broker too) is waited out with
        backoff; the consumer keeps the work it interrupted and does it again first.
        """
        outage = Outage("worker", self.app.settings.database_retry_timeout, log=logger)
        while not self.stopping:
            try:
                self.consumer.step()
            except DatabaseError as exc:
                self.pause(outage.failed(exc))
                continue
            except self.consumer.connection_errors as exc:
                self.consumer.reconnect(exc)
            outage.succeeded()
            if self.autoscaler is not None:
                self.autoscale()
            for hook in self.between_steps:
                hook()

    # -- a fleet (worker_consume_in_children) -------------------------------------------
    def _make_fleet(self, autoscale: tuple[int, int] | None, multiplier: int,
                    task_events: bool | None) -> Fleet:
        # Each child consumes and runs tasks itself; this process supervises.
        if autoscale is not None:
            raise ValueError("autoscale: not supported with consume_in_children yet (the "
                             "autoscaler reads the books of the parent, which runs no task)")
        self.fleet = Fleet(self.concurrency, spawn=self._run_child,
                           on_lost=self._on_child_task_lost, **self.recycling)
        # On django:// the rows a child leased come back only after their visibility
        # timeout if it dies: a child leases one at a time, so a kill strands no other.
        on_table = broker_alias(self.app.settings.broker_url) is not None
        self._child_options: dict[str, Any] = {
            "hostname": self.hostname, "prefetch_multiplier": 1 if on_table else multiplier,
            "task_events": task_events,
            "rate_buckets": SharedBuckets(self.concurrency).bucket}
        return self.fleet

    def _run_child(self, index: int, conn: Connection, inherited: list[Any]) -> NoReturn:
        # In the forked child: a solo worker of its own, answering remote control on ``conn``.
        assert self.fleet is not None, "only a fleet forks consuming children"
        self.executor.after_fork()

        def build(features: list[Feature]) -> Worker:
            # The queues as they are now: add_consumer/cancel_consumer may have changed them.
            child = Worker(self.app, queues=list(self.consumer.queue_names), pool="solo",
                           consume_in_children=False, remote_control=False,
                           extra_features=features, **self._child_options)
            child.events.clock = child.control.mailbox.clock = self.events.clock
            return child

        run_child(build, conn, self.fleet.slots, index, inherited, self.recycling,
                  self.app.backend)

    def _on_child_task_lost(self, request: Any, outcome: Outcome, delivery_tag: Any) -> None:
        # The fleet's supervisor thread: the main loop records it, as a pool's outcome, and
        # settles an acks_late message the broker would hold until its visibility timeout.
        connection = self.consumer.connection
        driver = connection.transport.driver_name if connection is not None else ""
        if request.acks_late and delivery_tag is not None and driver in SETTLED_BY_TAG:
            self.consumer.adopt(request, ByTag(self._parent_channel, delivery_tag))
        self.consumer.completions.put((request, outcome))

    def _parent_channel(self) -> Any:
        assert self.consumer.connection is not None, "settled by the main loop, while connected"
        return self.consumer.connection.default_channel

    def run_as_child(self, on_ready: Callable[[], None]) -> int:
        """Run as a fleet's child: no banner, heartbeat, beat or mailbox; the parent has them.

        Return the exit status: 0 after a warm stop, 1 after a cold one (SIGQUIT) or an
        outage it gave up on.
        """
        signal.signal(signal.SIGQUIT, self._on_cold_signal)
        signal.signal(signal.SIGUSR1, log_thread_stacks)
        try:
            self.pool.start()
            self.connect()
            self.events.start()
            # Ready before the first poll: that poll may already run a task (the solo pool
            # runs it there), and the parent asks only ready children what they run.
            on_ready()
            self.consumer.settle()
            self.consume_until_stopped()
            self.warm_shutdown(quiet=True)
        except (ColdShutdown, DatabaseUnavailable, OperationalError) as exc:
            if not isinstance(exc, ColdShutdown):
                # The database or the broker stayed away past its retries: one line, no
                # traceback; the parent meets the same outage and says what it does about it.
                logger.error("worker: process %s stops: %s", os.getpid(), exc)
            self.cold_shutdown(quiet=True)
            self.consumer.abandon()
            return 1
        finally:
            self.events.stop(timeout=5.0)
        self.consumer.close()
        self.app.close()
        return 0

    def autoscale(self) -> None:
        if self.autoscaler is None:  # started without --autoscale: nothing to resize
            return
        try:
            self.autoscaler.tick()
        except Exception:  # a pool that cannot resize now keeps its size; the worker goes on
            logger.exception("worker: the autoscaler could not resize the pool")

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a shutdown is asked for meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def warm_shutdown(self, quiet: bool = False) -> None:
        if not quiet:
            logger.warning("worker: Warm shutdown (%s)", self.hostname)
        self.consumer.stop_consuming()
        self.pool.give_back_waiting()  # not started yet: back to the queue, as reserved ones go
        while self.consumer.active:
            self.consumer.drain_active(timeout=1.0)
        self.pool.stop(wait=True)
        self.consumer.process_completions()

    def cold_shutdown(self, quiet: bool = False) -> None:
        if not quiet:
            logger.warning("worker: Cold shutdown (%s)", self.hostname)
        self.pool.stop(wait=False)
        try:
            self.consumer.process_completions()
        except Exception:  # the broker may be gone too; the messages return to it anyway
            logger.exception("Could not report the tasks killed by the cold shutdown")

    def request_stop(self) -> None:
        """Start a warm shutdown (remote control ``shutdown``: the first SIGTERM's path)."""
        self.stopping = True
        self.consumer.hold()

    def stop_between_tasks(self) -> None:
        """In the main loop, between two tasks: stop warmly and start nothing more now."""
        self.stopping = True
        self.consumer.stop_consuming()

    def stop_on(self, error: BaseException) -> None:
        """Stop the worker because a thread it depends on (beat) gave up with ``error``."""
        self.fatal = error
        self.stopping = True

    # -- signals -----------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGQUIT, self._on_cold_signal)
        # Prefork children put their own SIGUSR1 back (soft time limits) when they start.
        signal.signal(signal.SIGUSR1, log_thread_stacks)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            raise ColdShutdown
        self.request_stop()

    def _on_cold_signal(self, signum: int, frame: FrameType | None) -> None:
        raise ColdShutdown


def children_consume(settings: Settings, asked: bool | None, autoscale: tuple[int, int] | None) -> bool:
    """Whether a prefork worker's children consume: ``asked`` (the flag), else the setting.

    The autoscaler reads the books of a parent that feeds its pool, so ``--autoscale`` wins
    over the setting; asked for together with the flag, _make_fleet refuses the two.
    """
    if asked is not None:
        return asked
    if settings.worker_consume_in_children and autoscale is not None:
        logger.info("worker: --autoscale: the parent feeds the pool (worker_consume_in_children "
                    "is not supported with autoscale yet)")
        return False
    return bool(settings.worker_consume_in_children)


def log_thread_stacks(signum: int = 0, frame: FrameType | None = None) -> None:
    """SIGUSR1: log the stack of every thread of this process (Celery's "cry")."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, stack in sys._current_frames().items():
        parts.append(f"\n=== thread {names.get(ident, '?')} ({ident}) ===\n"
                     + "".join(traceback.format_stack(stack)))
    logger.warning("worker: SIGUSR1: stacks of %d threads of pid %d:%s", len(parts), os.getpid(),
                   "".join(parts))


def expand_hostname(template: str) -> str:
    """Expand Celery's ``%h`` (host name), ``%n`` (its first label) and ``%d`` (its domain)."""
    host = socket.gethostname()
    name, _, domain = host.partition(".")
    return template.replace("%h", host).replace("%n", name).replace("%d", domain)
