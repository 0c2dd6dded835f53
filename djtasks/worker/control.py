"""Remote control, worker side: answer the commands of the process mailbox (processes layer).

The worker's main thread consumes its own mailbox queue (``<hostname>.<exchange>.pidbox``)
on the consumer's connection, beside the task queues, so a command is handled between two
rounds of the consume loop and never races the consumer. Commands keep Celery's names,
arguments and reply shapes, so ``celery inspect``/``celery control`` and Flower work:

- inspect: ``ping``, ``registered``, ``active``, ``reserved``, ``scheduled``, ``revoked``,
  ``stats``, ``active_queues``, ``conf``, ``query_task``, ``report``
  (the snapshots are built in ``snapshots.py`` and ``stats.py``);
- control: ``rate_limit``, ``time_limit``, ``revoke``, ``add_consumer``,
  ``cancel_consumer``, ``pool_grow``, ``pool_shrink``, ``autoscale``, ``pool_restart``
  (with ``worker_pool_restarts`` only), ``shutdown``, ``enable_events``, ``disable_events``,
  ``heartbeat``.

``handlers`` is a plain dict: other features add their commands to it before ``listen``.
A command that raises answers ``{"error": "..."}``, as Celery's do.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Callable
from signal import SIGINT, SIGKILL, SIGTERM, Signals
from typing import TYPE_CHECKING, Any

import kombu
from kombu.exceptions import InconsistencyError

from djtasks.control import build_mailbox
from djtasks.exceptions import NotRegistered
from djtasks.utils.log import loggable
from djtasks.worker import snapshots, stats

if TYPE_CHECKING:
    from djtasks.worker.autoscale import Autoscaler
    from djtasks.worker.consumer import Consumer
    from djtasks.worker.heartbeat import Heartbeat

logger = logging.getLogger("djtasks.worker")

#: Signals a prefork child ignores (the parent decides when it stops): terminate kills instead.
IGNORED_BY_CHILDREN = frozenset({SIGTERM, SIGINT})


class WorkerControl:
    """The mailbox node of one worker; ``listen`` it on each new consumer connection."""

    def __init__(self, consumer: Consumer, hostname: str, heartbeat: Heartbeat | None = None,
                 on_shutdown: Callable[[], None] | None = None) -> None:
        self.consumer = consumer
        self.hostname = hostname
        self.heartbeat = heartbeat
        self.mailbox = build_mailbox(consumer.app)
        self.on_shutdown = on_shutdown
        self.autoscaler: Autoscaler | None = None
        self.started = time.monotonic()
        # Commands carry the sender's Lamport clock: ours moves past it (Celery's rule); it
        # is the clock events carry, and the one ``stats`` reports.
        self.mailbox.clock = consumer.events.sender.clock
        self.handlers: dict[str, Callable[..., Any]] = {
            "ping": self.ping,
            "registered": self.registered,
            "active": lambda **_: snapshots.active(self.consumer),
            "reserved": lambda **_: snapshots.reserved(self.consumer),
            "scheduled": lambda **_: snapshots.scheduled(self.consumer),
            "revoked": lambda **_: self.consumer.revocations.known(),
            "query_task": self.query_task,
            "stats": lambda **_: stats.stats(self.consumer, self.started, self.mailbox.clock.value),
            "active_queues": self.active_queues,
            "conf": lambda **_: stats.conf(self.consumer),
            "report": lambda **_: {"ok": stats.report(self.consumer)},
            "rate_limit": self.rate_limit,
            "time_limit": self.time_limit,
            "revoke": self.revoke,
            "add_consumer": self.add_consumer,
            "cancel_consumer": self.cancel_consumer,
            "pool_grow": self.pool_grow,
            "pool_shrink": self.pool_shrink,
            "autoscale": self.autoscale,
            "pool_restart": self.pool_restart,
            "shutdown": self.shutdown,
            "enable_events": self.enable_events,
            "disable_events": self.disable_events,
            "heartbeat": self.send_heartbeat,
        }
        self._listener: kombu.Consumer | None = None

    # -- wiring -------------------------------------------------------------------------
    def listen(self, connection: kombu.Connection) -> None:
        """Consume this worker's mailbox queue on ``connection`` (a channel of its own)."""
        channel = connection.channel()
        self.node = self.mailbox(connection).Node(
            self.hostname, state=self, channel=channel,
            # kombu calls handler(state, **arguments); ours are bound methods.
            handlers={name: _answering(name, handler) for name, handler in self.handlers.items()},
        )
        queue = self.mailbox.get_queue(self.hostname)(channel)
        try:
            queue.declare()
            # Commands sent while no worker of this name was listening are stale now.
            queue.purge()
            self._listener = self.node.listen(channel=channel, callback=self.on_message)
        except (*connection.channel_errors, InconsistencyError) as exc:
            # RabbitMQ: another live worker has this name and so holds the exclusive queue.
            # Tasks run all the same; only remote control does not reach this worker.
            self._listener = None
            logger.warning("control: cannot listen on the mailbox of %s (%s): this worker does "
                           "not answer remote control; give each worker its own name (-n)",
                           self.hostname, exc)

    def close(self) -> None:
        """Stop listening and delete the mailbox queue (best effort: the broker may be gone)."""
        if self._listener is None:
            return
        listener, self._listener = self._listener, None
        try:
            listener.cancel()
            self.mailbox.get_queue(self.hostname)(listener.channel).delete()
        except Exception:
            logger.debug("control: could not delete the mailbox queue", exc_info=True)

    def on_message(self, body: Any, message: kombu.Message) -> None:
        """kombu callback: handle a command; a malformed one is logged, never raised."""
        try:
            self.handle(body, message)
        except Exception:  # the mailbox runs in the main loop: a bad command must not stop it
            logger.exception("control: could not handle %s", loggable(repr(body)))

    def handle(self, body: Any, message: kombu.Message) -> None:
        """Handle a command unless it expired while it waited."""
        expires = message.headers.get("expires") if message is not None else None
        if expires and time.time() > expires:
            logger.debug("control: dropping expired command %r", body)
            return
        if not isinstance(body, dict) or "method" not in body:
            logger.error("control: not a command: %r", body)
            return
        destination = body.get("destination")
        if destination and self.hostname not in destination:
            return  # addressed to other workers: not even an error is ours to answer
        if body["method"] not in self.handlers:
            logger.error("control: unknown command %r", body["method"])
            if body.get("reply_to"):
                error = {"error": f"unknown command {body['method']!r}, expected one of "
                                  f"{', '.join(sorted(self.handlers))}"}
                self.node.reply({self.hostname: error}, exchange=body["reply_to"]["exchange"],
                                routing_key=body["reply_to"]["routing_key"], ticket=body.get("ticket"))
            return
        self.node.handle_message(body, message)

    # -- commands -----------------------------------------------------------------------
    def ping(self, **_: Any) -> dict[str, str]:
        return {"ok": "pong"}

    def registered(self, taskinfoitems: list[str] | None = None, **_: Any) -> list[str]:
        """This worker's task names, djtasks' own built-ins left out, sorted.

        As Celery's: each name is followed by ``[attribute=value ...]`` for the task
        attributes named in ``taskinfoitems`` that are set (by default ``rate_limit``).
        """
        items = taskinfoitems or TASK_INFO_ITEMS
        tasks = self.consumer.app.tasks
        listed = []
        for name in tasks.user_tasks():
            task = tasks[name]
            shown = [f"{item}={getattr(task, item)}" for item in items
                     if getattr(task, item, None) is not None]
            listed.append(f"{name} [{' '.join(shown)}]" if shown else name)
        return listed

    def query_task(self, ids: str | list[str] | None = None, **_: Any) -> dict[str, Any]:
        """``{id: [state, request]}`` for the ids this worker runs, reserves or holds."""
        return snapshots.query_task(self.consumer, [ids] if isinstance(ids, str) else ids or [])

    def active_queues(self, **_: Any) -> list[dict[str, Any]]:
        """The queues this worker consumes, described as Celery's ``active_queues`` does."""
        queues = (self.consumer.app.router.queue(name) for name in self.consumer.queue_names)
        return [{"name": queue.name, "routing_key": queue.routing_key,
                 "exchange": {"name": queue.exchange.name, "type": queue.exchange.type}}
                for queue in queues]

    def enable_events(self, **_: Any) -> dict[str, str]:
        """Turn task events on (worker events follow their setting)."""
        sender = self.consumer.events.sender
        if sender.task_events:
            return {"ok": "task events already enabled"}
        sender.task_events = True
        logger.info("control: task events enabled")
        return {"ok": "task events enabled"}

    def disable_events(self, **_: Any) -> dict[str, str]:
        sender = self.consumer.events.sender
        if not sender.task_events:
            return {"ok": "task events already disabled"}
        sender.task_events = False
        logger.info("control: task events disabled")
        return {"ok": "task events disabled"}

    def send_heartbeat(self, **_: Any) -> None:
        """Send a worker-heartbeat event now; Celery's command answers nothing."""
        if self.heartbeat is not None:
            self.heartbeat.beat_now()

    def rate_limit(self, task_name: str, rate_limit: Any = None, **_: Any) -> dict[str, str]:
        """Set ``task_name``'s rate limit on this worker."""
        try:
            self.consumer.app.tasks[task_name]
        except NotRegistered:
            return {"error": f"unknown task {task_name!r}"}
        try:
            self.consumer.rate_limits.set_rate(task_name, rate_limit)
        except ValueError as exc:
            return {"error": f"invalid rate limit: {exc}"}
        if self.consumer.rate_limits.rate_of(task_name) is None:
            logger.info("control: rate limit of %s disabled", task_name)
            return {"ok": "rate limit disabled successfully"}
        logger.info("control: rate limit of %s set to %s", task_name, rate_limit)
        return {"ok": "new rate limit set successfully"}

    def time_limit(self, task_name: str | None = None, hard: float | None = None,
                   soft: float | None = None, **_: Any) -> dict[str, str]:
        """Set ``task_name``'s time limits on this worker, for its executions from now on."""
        if task_name is None:
            return {"error": "unknown task"}
        try:
            task = self.consumer.app.tasks[task_name]
        except NotRegistered:
            return {"error": "unknown task"}
        limits = {"soft_time_limit": _seconds(soft), "time_limit": _seconds(hard)}
        for option, value in limits.items():
            # The main process reads them for each new message (worker/features/time_limits.py).
            setattr(task, option, value)
        logger.info("control: time limits of %s set to soft=%s hard=%s", task_name, soft, hard)
        return {"ok": "time limits set successfully"}

    def revoke(self, task_id: str | list[str], terminate: bool = False,
               signal: str | int | None = None, **_: Any) -> dict[str, str]:
        """Skip ``task_id`` (one or several); with ``terminate``, stop it where it runs."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        revocations = self.consumer.revocations
        revocations.add(ids)
        if not terminate:
            return {"ok": f"tasks {', '.join(ids)} flagged as revoked"}
        try:
            signum = signal_number(signal or "SIGTERM")
        except ValueError as exc:
            return {"error": str(exc)}
        pool = self.consumer.pool
        if not pool.supports_hard_kill:
            logger.warning("control: the %s pool cannot stop running tasks; %s will finish",
                           pool.name, ", ".join(ids))
            return {"error": f"the {pool.name} pool cannot terminate a running task"}
        if signum in IGNORED_BY_CHILDREN:
            signum = SIGKILL
        killed = []
        for one in ids:
            if pool.kill_job(_runs_task(one), signum):  # False unless it runs or waits there
                # Its outcome comes back as a lost process: it is to read REVOKED instead.
                revocations.mark_terminated(one, signum)
                killed.append(one)
                logger.warning("Terminating %s (%s)", one, signal_name(signum))
        return {"ok": f"tasks {', '.join(ids)} flagged as revoked"
                      + (f", terminated: {', '.join(killed)}" if killed else "")}


    def add_consumer(self, queue: str, exchange: str | None = None,
                     exchange_type: str | None = None, routing_key: str | None = None,
                     **_: Any) -> dict[str, str]:
        """Start consuming ``queue`` now, without a restart."""
        if not self.consumer.add_queue(queue, exchange, routing_key, exchange_type or "direct"):
            return {"ok": f"already consuming from {queue!r}"}
        logger.info("control: consuming from %s", queue)
        return {"ok": f"add consumer {queue}"}

    def cancel_consumer(self, queue: str, **_: Any) -> dict[str, str]:
        """Stop consuming ``queue``; what this worker reserved of it still runs."""
        if not self.consumer.cancel_queue(queue):
            return {"error": f"expected a queue this worker consumes, got {queue!r}"}
        logger.info("control: no longer consuming from %s", queue)
        return {"ok": f"no longer consuming from {queue}"}

    def pool_grow(self, n: int | str = 1, **_: Any) -> dict[str, str]:
        return self._resize(self.consumer.pool.grow, int(n), "pool will grow")

    def pool_shrink(self, n: int | str = 1, **_: Any) -> dict[str, str]:
        return self._resize(self.consumer.pool.shrink, int(n), "pool will shrink")

    def _resize(self, resize: Callable[[int], None], n: int, answer: str) -> dict[str, str]:
        resize(n)
        if self.autoscaler is None:  # an autoscaling worker's window is sized for its max
            self.consumer.resize_window()
        logger.info("control: %s by %s to %s", answer, n, self.consumer.pool.limit)
        return {"ok": answer}

    def autoscale(self, max: int | None = None, min: int | None = None,  # noqa: A002 - Celery's names
                  **_: Any) -> dict[str, str]:
        if self.autoscaler is None:
            return {"error": "autoscale is not enabled: start the worker with --autoscale max,min"}
        self.autoscaler.update(max, min)
        self.consumer.resize_window(self.autoscaler.maximum)
        return {"ok": f"autoscale now max={self.autoscaler.maximum} min={self.autoscaler.minimum}"}

    def pool_restart(self, modules: list[str] | None = None, reload: bool = False,
                     **_: Any) -> dict[str, str]:
        """Replace the pool's processes; with ``reload``, reload the named task modules first.

        Only modules that hold a registered task may be named: a message never makes the
        worker import anything new.
        """
        if not self.consumer.app.settings.worker_pool_restarts:
            return {"error": "pool restarts are not enabled (worker_pool_restarts)"}
        known = {type(task).run.__module__ for task in self.consumer.app.tasks.values()}
        unknown = sorted(set(modules or ()) - known)
        if unknown:
            return {"error": f"expected modules of registered tasks, got {', '.join(unknown)}"}
        if reload:
            for name in modules or ():
                importlib.reload(sys.modules[name])
        self.consumer.pool.restart()
        logger.warning("control: restarting the pool's processes")
        return {"ok": "reload started"}

    def shutdown(self, msg: str = "Got shutdown from remote", **_: Any) -> dict[str, str]:
        """Start a warm shutdown, as the first SIGTERM does."""
        logger.warning("control: %s", msg)
        if self.on_shutdown is None:
            return {"error": "this worker cannot be shut down remotely"}
        self.on_shutdown()
        return {"ok": "shutting down"}


#: The task attributes ``registered`` shows by default (those of them that are set).
TASK_INFO_ITEMS = ("exchange", "routing_key", "rate_limit")


def signal_number(value: str | int) -> int:
    """Return the number of a signal given as 9, "9", "KILL" or "SIGKILL"."""
    text = str(value).strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else f"SIG{text}"
    try:
        return int(Signals[name])
    except KeyError:
        raise ValueError(f"signal: expected a signal name like 'SIGTERM' or a number, "
                         f"got {value!r}") from None


def signal_name(signum: int) -> str:
    try:
        return Signals(signum).name
    except ValueError:
        return str(signum)


def _seconds(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"time limit: expected seconds, got {value!r}") from None
    return seconds or None


def _answering(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """kombu's handler form, ``handler(state, **arguments)``; an error becomes the answer."""
    def handler(_state: Any, **arguments: Any) -> Any:
        try:
            return method(**arguments)
        except Exception as exc:  # one bad command answers an error; the worker goes on
            logger.warning("control: %s failed: %s", name, exc)
            return {"error": f"{name}: {exc}"}

    return handler


def _runs_task(task_id: str) -> Callable[[Any], bool]:
    """Match the pool request that runs ``task_id``."""
    def match(request: Any) -> bool:
        return bool(request.message.id == task_id)
    return match
