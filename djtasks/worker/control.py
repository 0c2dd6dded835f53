"""Remote control, worker side: answer the commands of the process mailbox (processes layer).

The worker's main thread consumes its own mailbox queue (``<hostname>.<exchange>.pidbox``)
on the consumer's connection, beside the task queues, so a command is handled between two
rounds of the consume loop and never races the consumer. Commands, with Celery's names and
arguments: ``ping``, ``registered`` (inspect), ``rate_limit``, ``revoke``, ``enable_events``,
``disable_events`` and ``heartbeat``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from signal import SIGINT, SIGKILL, SIGTERM, Signals
from typing import TYPE_CHECKING, Any

import kombu
from kombu.exceptions import InconsistencyError

from djtasks.control import build_mailbox
from djtasks.exceptions import NotRegistered
from djtasks.utils.log import loggable

if TYPE_CHECKING:
    from djtasks.worker.consumer import Consumer
    from djtasks.worker.heartbeat import Heartbeat

logger = logging.getLogger("djtasks.worker")

#: Signals a prefork child ignores (the parent decides when it stops): terminate kills instead.
IGNORED_BY_CHILDREN = frozenset({SIGTERM, SIGINT})


class WorkerControl:
    """The mailbox node of one worker; ``listen`` it on each new consumer connection."""

    def __init__(self, consumer: Consumer, hostname: str, heartbeat: Heartbeat | None = None) -> None:
        self.consumer = consumer
        self.hostname = hostname
        self.heartbeat = heartbeat
        self.mailbox = build_mailbox(consumer.app)
        # Commands carry the sender's Lamport clock: ours moves past it (Celery's rule).
        self.mailbox.clock = consumer.events.sender.clock
        self.handlers: dict[str, Callable[..., Any]] = {
            "ping": self.ping,
            "registered": self.registered,
            "active_queues": self.active_queues,
            "rate_limit": self.rate_limit,
            "revoke": self.revoke,
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
            handlers={name: _unbound(handler) for name, handler in self.handlers.items()},
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

    def registered(self, **_: Any) -> list[str]:
        """This worker's task names, djtasks' own built-ins left out."""
        return self.consumer.app.tasks.user_tasks()

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

    def active_queues(self, **_: Any) -> list[dict[str, Any]]:
        """The queues this worker consumes, described as Celery's ``active_queues`` does."""
        queues = (self.consumer.app.router.queue(name) for name in self.consumer.queue_names)
        return [{"name": queue.name, "routing_key": queue.routing_key,
                 "exchange": {"name": queue.exchange.name, "type": queue.exchange.type}}
                for queue in queues]

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
            if one in self.consumer.active and pool.kill_job(
                    lambda job, one=one: job.message.id == one, signum):
                # Its outcome comes back as a lost process: it is to read REVOKED instead.
                revocations.mark_terminated(one, signum)
                killed.append(one)
                logger.warning("Terminating %s (%s)", one, signal_name(signum))
        return {"ok": f"tasks {', '.join(ids)} flagged as revoked"
                      + (f", terminated: {', '.join(killed)}" if killed else "")}


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


def _unbound(method: Callable[..., Any]) -> Callable[..., Any]:
    def handler(_state: Any, **arguments: Any) -> Any:
        return method(**arguments)

    return handler
