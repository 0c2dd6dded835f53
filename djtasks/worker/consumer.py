"""Consumer: broker messages in, Requests out to the pool, acks back (processes layer).

The main thread owns the broker connection: it receives, keeps at most the prefetch window
of unacknowledged messages, hands a Request to the pool whenever a slot is free and settles its
message when it is done. Pool members never touch the connection; their completions come
back through a queue that only the main thread drains. What happens on the way (ETA,
revoke, rate limits, acks, results, events, ...) is the worker's features' hooks
(``worker/features/``); the consumer runs the pipeline and keeps the books.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import kombu
from django.db import DatabaseError
from kombu.exceptions import ContentDisallowed as KombuContentDisallowed
from kombu.exceptions import DecodeError

from djtasks import protocol, signals
from djtasks.application import App
from djtasks.backends.base import exception_to_dict
from djtasks.conf import censor_url
from djtasks.exceptions import DjtasksError, NotRegistered, OperationalError, ProtocolError
from djtasks.task import Request
from djtasks.utils.log import loggable
from djtasks.utils.rates import Bucket
from djtasks.worker import features
from djtasks.worker.deliveries import DeliveryLimit
from djtasks.worker.eta import EtaGate
from djtasks.worker.events import EventSender, TaskEvents
from djtasks.worker.heartbeat import WorkerStats
from djtasks.worker.pools.base import Outcome, Pool, PoolFull
from djtasks.worker.rate_limits import RateLimits
from djtasks.worker.rejected import keep_rejected
from djtasks.worker.revocations import Revocations
from djtasks.worker.settlement import Fate, late_fate, settle_message
from djtasks.worker.workflow import Workflow

logger = logging.getLogger("djtasks.worker")

#: How long the loop may block on the broker while tasks are running.
SHORT_DRAIN = 0.05
#: How long it may block otherwise; also bounds how late a warm shutdown is noticed.
LONG_DRAIN = 1.0
#: How long it waits for a free pool slot before it listens to the broker again.
FULL_WAIT = 0.25


class Consumer:
    """Receive task messages for one worker and feed its pool."""

    def __init__(self, app: App, pool: Pool, queues: Sequence[str], hostname: str,  # noqa: PLR0913 - the parts a consumer is made of
                 prefetch_count: int, events: TaskEvents | None = None,
                 extra_features: Sequence[features.Feature] = (), *,
                 consume_tasks: bool = True,
                 rate_buckets: Callable[[str, float], Bucket] | None = None) -> None:
        self.app = app
        self.pool = pool
        self.queue_names = list(queues)
        #: False in a fleet's parent: it keeps the queue names (remote control, the children
        #: mirror them) and its mailbox, but its children receive the tasks.
        self.consume_tasks = consume_tasks
        self.hostname = hostname
        self.prefetch_count = prefetch_count
        self.accept = list(app.settings.accept_content)
        self.reserved: deque[tuple[Request, kombu.Message]] = deque()
        #: Set by hold(): a warm stop began, and what is reserved waits to be given back.
        self.holding = False
        self.active: dict[str, tuple[Request, kombu.Message]] = {}
        self.started_at: dict[str, float] = {}  # task id -> time.time() it went to the pool
        self.prefetch_multiplier = max(prefetch_count // max(pool.limit, 1), 1)
        # Finished requests, and (outcome None) requests a member took after they waited.
        self.completions: queue.SimpleQueue[tuple[Request, Outcome | None]] = queue.SimpleQueue()
        pool.on_start = self._on_start
        self.connection: kombu.Connection | None = None
        self._consumer: kombu.Consumer | None = None
        self._stale: set[str] = set()  # acks_late tasks whose channel died while they ran
        # Work a database error interrupted, done again first once the database answers:
        # messages received but neither reserved nor settled, and finished requests not yet
        # reported and settled. Nothing is dropped while the database is away.
        self._unreceived: deque[kombu.Message] = deque()
        self._unfinished: deque[tuple[Request, Outcome | None]] = deque()
        self.revocations = Revocations(app.backend, keep_for=app.settings.revoke_expires)
        self.workflow = Workflow(app)
        self.request_class = features.RequestClass(app)
        self.eta = EtaGate([app.router.queue(name) for name in self.queue_names])
        self.deliveries = DeliveryLimit(app, hostname, self.workflow, lambda: self.eta.queues)
        # A fleet's children consume side by side and take from one bucket per task.
        self.rate_limits = RateLimits(app.tasks, pool, on_held=self._widen_window,
                                      make_bucket=rate_buckets)
        #: Task events (off unless the worker gives its sender) and the heartbeat's counters.
        self.events = events or TaskEvents(EventSender(app.connection, hostname, task_events=False,
                                                       worker_events=False))
        self.stats = WorkerStats()
        self.features = features.Features([
            features.Events(app.tasks, self.events, sender=self), features.Stats(self.stats),
            features.Revoke(app, self.revocations, self.workflow, self.events),
            features.Eta(self.eta), features.RateLimits(self.rate_limits),
            features.Deliveries(self.deliveries), features.Acks(pool), features.TimeLimits(),
            self.request_class, features.Results(app, self.workflow),
            features.Retries(), *extra_features,
        ])
        self.results: features.Results = self.features.find(features.Results)
        self.acks: features.Acks = self.features.find(features.Acks)
        #: Called with each new connection, after the task queues (the control mailbox).
        self.on_connect: list[Callable[[kombu.Connection], None]] = []

    # -- connection --------------------------------------------------------------------
    def connect(self, max_retries: int | None = 3) -> None:
        """Open the broker connection, declare the queues and start consuming."""
        self.connection = self.app.connection()
        try:
            self.connection.ensure_connection(
                max_retries=max_retries, interval_start=1, interval_step=1, interval_max=5,
                errback=_log_connection_retry,
            )
        except kombu.exceptions.OperationalError as exc:
            raise OperationalError(
                f"cannot connect to the broker {censor_url(self.app.settings.broker_url)}: {exc}"
            ) from exc
        channel = self.connection.channel()
        queues = [self.app.router.queue(name) for name in self.queue_names] if self.consume_tasks else []
        self._consumer = kombu.Consumer(channel, queues=queues, on_message=self.on_message,
                                        accept=self.accept, no_ack=False)
        self._set_window(self.prefetch_count)
        self._consumer.consume()
        for hook in self.on_connect:
            hook(self.connection)

    def add_queue(self, name: str, exchange: str | None = None, routing_key: str | None = None,
                  exchange_type: str = "direct") -> bool:
        """Consume ``name`` now, after reconnects too; False if it is consumed already."""
        if name in self.queue_names:
            return False
        queue = self.app.router.queue(name, exchange, routing_key, exchange_type)
        self.queue_names.append(name)
        self.eta.queues.append(queue)
        if self._consumer is not None and self.consume_tasks:
            self._consumer.add_queue(queue)
            self._consumer.consume()  # starts the queues not consumed yet
        return True

    def cancel_queue(self, name: str) -> bool:
        """Stop consuming ``name`` (remote control; its reserved messages still run)."""
        if name not in self.queue_names:
            return False
        self.queue_names.remove(name)
        self.eta.queues = [queue for queue in self.eta.queues if queue.name != name]
        if self._consumer is not None and self.consume_tasks:
            self._consumer.cancel_by_queue(name)
        return True

    def resize_window(self, slots: int | None = None) -> None:
        """Fit the prefetch window to ``slots`` (default: the pool's size, after it changed)."""
        self.prefetch_count = (slots or self.pool.limit) * self.prefetch_multiplier
        self._widen_window(self.rate_limits.held)

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """Errors after which the connection is gone and a new one is needed."""
        if self.connection is None:
            return ()
        return self.connection.connection_errors + self.connection.channel_errors

    def reconnect(self, error: BaseException) -> None:
        """Start over on a new connection after ``error`` broke the old one.

        Reserved messages are forgotten: their deliveries died with the channel and the
        broker hands them out again. Running tasks go on; an acks_late one cannot be
        acknowledged on the dead channel, so it may run again (at least once).
        """
        logger.error("consumer: connection to broker lost (%s); reconnecting", error)
        self.reserved.clear()
        self.eta.forget()
        self.rate_limits.clear()
        self._stale = {task_id for task_id, (request, _) in self.active.items() if request.acks_late}
        old, self.connection = self.connection, None
        try:
            if old is not None:
                old.release()
        except Exception:  # it is broken already; releasing is a courtesy
            logger.debug("consumer: error while releasing the broken connection", exc_info=True)
        self.connect(max_retries=None)
        logger.info("consumer: connected again to %s", censor_url(self.app.settings.broker_url))

    def hold(self) -> None:
        """Start no more reserved requests: a warm stop began; stop_consuming gives them back.

        May come from another thread or a signal handler while a task runs: the solo pool
        runs it inside dispatch(), which would otherwise start the next one when it returns.
        """
        self.holding = True

    def stop_consuming(self) -> None:
        """Receive nothing more; give reserved (not yet started) messages back to the queue."""
        if self._consumer is not None:
            self._consumer.cancel()
        self.reserved.extend(self.eta.take_all())
        self.reserved.extend(self.rate_limits.clear())
        while self.reserved:
            _job, message = self.reserved.popleft()
            message.reject(requeue=True)

    def close(self) -> None:
        self.app.backend.confirm_writes()
        if self.connection is not None:
            self.connection.release()
            self.connection = None

    def abandon(self) -> None:
        """Drop the connection without the closing handshake (after a cold shutdown).

        The broker takes back every unacknowledged message when the socket goes away.
        """
        if self.connection is not None:
            try:
                self.connection.collect(socket_timeout=1.0)
            except Exception:  # half-broken already; the socket is what matters
                logger.debug("consumer: error while dropping the connection", exc_info=True)
            self.connection = None

    # -- the loop ----------------------------------------------------------------------
    def step(self) -> None:
        """Do one round of work: completions, dispatch, then wait for the broker or a slot."""
        while self._unreceived:
            self.receive(self._unreceived[0])
            self._unreceived.popleft()
        self.reserved.extend(self.eta.due())
        self.process_completions()
        self.dispatch()
        # A result write sent without waiting (solo pools): read its reply if it came.
        self.app.backend.confirm_writes(wait=False)
        if self.reserved and self.pool.free_slots() == 0:
            if self.pool.wait_for_free_slot(FULL_WAIT):
                return
            timeout = SHORT_DRAIN  # still full: let remote control (and heartbeats) through
        else:
            # While tasks run, come back soon to log and acknowledge them as they finish;
            # while messages are held for their eta, to start them on time.
            soon = self.active or self.eta.holding or self.app.backend.unconfirmed_writes
            timeout = self.rate_limits.wait_time(SHORT_DRAIN if soon else LONG_DRAIN)
        assert self.connection is not None, "the loop runs between connect() and stop_consuming()"
        try:
            self.connection.drain_events(timeout=timeout)
        except TimeoutError:  # nothing arrived: keep the AMQP heartbeat going
            self.connection.heartbeat_check()

    def settle(self) -> None:
        """Poll the connection once, briefly: called before the worker says it is ready.

        kombu's Redis transport subscribes to broadcast (fanout) queues, the mailbox of
        remote control among them, on its first poll, not when they are declared: a command
        sent between "ready" and that poll would reach nobody. A message this poll delivers
        is received as in the loop; an error is left to the loop, which handles it there.
        """
        if self.connection is None:
            return
        failures: tuple[type[BaseException], ...] = (DatabaseError, *self.connection_errors)
        try:
            self.connection.drain_events(timeout=SHORT_DRAIN)
        except TimeoutError:
            pass
        except failures:
            logger.debug("consumer: first poll failed; the loop deals with it", exc_info=True)

    def drain_active(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for running tasks to finish, acknowledging as they do."""
        self.process_completions()
        if self.active:
            assert self.connection is not None, "draining happens before stop_consuming()"
            # Draining (not sleeping) keeps AMQP heartbeats and acks flowing meanwhile.
            try:
                self.connection.drain_events(timeout=min(timeout, SHORT_DRAIN))
            except TimeoutError:
                pass
        self.process_completions()

    # -- receiving ---------------------------------------------------------------------
    def on_message(self, message: kombu.Message) -> None:
        """kombu callback: validate a message and reserve it, or reject it if it is bad.

        A database error on the way (parking it, reading revocations) leaves the message
        to be received again once the database answers; the error goes to the loop.
        """
        try:
            self.receive(message)
        except DatabaseError:
            self._unreceived.append(message)
            raise
        self.dispatch()

    def receive(self, message: kombu.Message) -> None:
        """Validate ``message`` and reserve, defer or reject it."""
        try:
            request = self.request_for(message)
        except (ProtocolError, NotRegistered, DecodeError, KombuContentDisallowed) as exc:
            self.reject_bad_message(message, exc)
            return
        except Exception as exc:  # whatever a message holds, it fails alone: never the worker
            logger.exception("Message %s could not be read",
                             _id_for_log(protocol.task_id_of(message.headers, message.properties)))
            self.reject_bad_message(message, exc)
            return
        if self.features.before_reserve(request, message):  # else: due later, parked or held
            self.reserved.append((request, message))

    def request_for(self, message: kombu.Message) -> Request:
        """Decode and parse ``message`` into the Request that runs it; raise if it cannot run."""
        protocol.check_content_type(message.content_type, self.accept)
        protocol.check_size(message.body, self.app.settings.task_max_message_size)
        body = message.decode()
        task_message = protocol.from_wire(message.headers, message.properties, body,
                                          message.delivery_info)
        task = self.app.tasks[task_message.task]
        return self.request_class.class_for(task_message.task)(
            task_message,
            hostname=self.hostname,
            delivery_info=_plain_delivery_info(message.delivery_info),
            received=time.time(),
            **self.features.request_fields(task_message, task, self.app.settings),
        )

    def reject_bad_message(self, message: kombu.Message, exc: Exception) -> None:
        """Log and reject a message that cannot run; keep it; fail its result so no caller waits.

        It is kept as a DeadLetter (``worker/rejected.py``). Its FAILURE never replaces a
        ready result: a broken message carrying the id of a finished task leaves that
        task's outcome alone. A message without a usable id (none, or one too long to store
        a result under) has no result to fail.
        """
        task_id = protocol.task_id_of(message.headers, message.properties)
        logger.error("Rejecting message %s: %s", _id_for_log(task_id), loggable(exc, 1000))
        message.reject(requeue=False)
        self.events.rejected(task_id)
        if isinstance(exc, NotRegistered):
            signals.task_unknown.send_robust(sender=self, name=exc.args[0], id=task_id,
                                             message=message, exc=exc)
        else:
            signals.task_rejected.send_robust(sender=self, message=message, exc=exc)
        try:
            keep_rejected(message, exc, task_id=task_id, queues=self.eta.queues, worker=self.hostname,
                          keep_at_most=self.app.settings.dead_letter_max_count)
            if task_id:
                self.app.backend.fail_unless_ready(task_id, exception_to_dict(exc))
        except Exception:
            logger.exception("Could not keep or fail rejected message %s", _id_for_log(task_id))

    # -- running -----------------------------------------------------------------------
    def dispatch(self) -> None:
        """Start reserved requests while the pool has free slots."""
        self.reserved.extendleft(reversed(self.rate_limits.release()))
        while self.reserved and not self.holding and self.pool.free_slots() > 0:
            request, message = self.reserved.popleft()
            try:
                self.start(request, message)
            except PoolFull:  # a member went away since free_slots(): the next round starts it
                self.reserved.appendleft((request, message))
                return
            except DatabaseError:  # not started: it is the first to start once the database answers
                self.reserved.appendleft((request, message))
                raise

    def start(self, request: Request, message: kombu.Message) -> None:
        """Run ``request`` on the pool, unless a feature settles it (expired, revoked, held back)."""
        if not self.features.before_start(request, message):
            return
        self.active[request.message.id] = (request, message)
        self.started_at[request.message.id] = time.time()
        self.stats.active = len(self.active)
        inline = self.pool.runs_in_submit
        if inline:  # submit() runs it: now is while it runs (a PoolFull below is rare here,
            self.features.on_running(request, message)  # dispatch() asked free_slots())
        try:
            self.pool.submit(request, self._on_done)
        except PoolFull:  # not started; dispatch() keeps it first in line
            self._drop_active(request)
            raise
        except Exception as exc:  # it cannot reach a pool member (prefork: it does not pickle)
            self._drop_active(request)
            if not request.acks_late and not message.acknowledged:
                message.ack()  # a pool whose jobs may wait acknowledges after submit()
            self.fail_unsent(request, message, exc)
            return
        if not inline:
            self.features.on_running(request, message)
        self.features.after_start(request, message)

    def fail_unsent(self, request: Request, message: kombu.Message, exc: Exception) -> None:
        """Fail ``request``, which the pool refused: store FAILURE, fail its canvas, settle it."""
        error = DjtasksError(f"the worker could not hand the task to its pool: {exc}")
        logger.error("Task %s failed: %s", request.label, loggable(error, 1000))
        try:
            self.results.record_failure(request, error, fail_canvas=True)
        except DatabaseError:  # acknowledged already: it cannot be started again for a retry
            logger.exception("Could not store the failure of %s", request.label)
        if request.acks_late:
            settle_message(message, Fate.ACK if request.acks_on_failure_or_timeout else Fate.REJECT)

    def _widen_window(self, held: int) -> None:
        # Held rate-limited messages stay unacknowledged: widen the window by as many.
        if self._consumer is not None and self.prefetch_count:
            self._set_window(self.prefetch_count + held)

    def _set_window(self, count: int) -> None:
        assert self._consumer is not None, "called while consuming"
        assert self.connection is not None, "called while consuming"
        # RabbitMQ fixes a consumer's own prefetch when it starts consuming; a channel-wide
        # (global) one can change at any time, so it is the one used there (as Celery does).
        self._consumer.qos(prefetch_count=count,
                           apply_global=not self.connection.qos_semantics_matches_spec)

    def _on_done(self, request: Request, outcome: Outcome) -> None:
        # Called from a pool thread: hand over to the main thread, which owns the connection.
        self.completions.put((request, outcome))

    def _on_start(self, request: Request) -> None:
        # A pool thread: a member took a request that waited; the main thread acknowledges it.
        self.completions.put((request, None))

    def adopt(self, request: Request, message: Any) -> None:
        """Book ``request``, which ran elsewhere (a fleet's child), with a stand-in for its
        message: its completion settles that as it would settle the message itself."""
        self.active[request.message.id] = (request, message)

    def _drop_active(self, request: Request) -> None:
        # The request left the pool's books: done, given back, or never handed over.
        self.active.pop(request.message.id, None)
        self.started_at.pop(request.message.id, None)
        self.stats.active = len(self.active)

    def give_back(self, request: Request, message: kombu.Message | None) -> None:
        """Put the message of ``request``, which no pool member took, back on its queue."""
        self.acks.forget(request)
        self._drop_active(request)
        if message is None or message.acknowledged:
            return
        if request.message.id in self._stale:  # its channel is gone: the broker has it back
            self._stale.discard(request.message.id)
            return
        logger.info("Task %s: not started; back to its queue", request.label)
        settle_message(message, Fate.REQUEUE)

    def process_completions(self) -> None:
        """Log finished requests and acknowledge the acks_late ones.

        A database error while one is handled puts it back, first in line, and goes to the
        loop: once the database answers it is reported and settled, never dropped.
        """
        while True:
            if self._unfinished:
                request, outcome = self._unfinished.popleft()
            else:
                try:
                    request, outcome = self.completions.get_nowait()
                except queue.Empty:
                    return
            try:
                self.complete(request, outcome)
            except DatabaseError:
                self._unfinished.appendleft((request, outcome))
                raise

    def complete(self, request: Request, outcome: Outcome | None) -> None:
        """Let the features record the end of ``request``, then settle its message."""
        _job, message = self.active.get(request.message.id, (request, None))
        if outcome is None:  # not the end: a member took it after it waited
            self.acks.taken(request, message)
            return
        if self.features.before_complete(request, outcome):
            if not outcome.started:  # it waited, and the pool stopped before a member took it
                self.give_back(request, message)
                return
            fate = late_fate(request, outcome) if request.acks_late else Fate.ACK
            self.features.after_complete(request, outcome, fate)
        else:  # a feature recorded how it ended (revoke(terminate=True))
            fate = Fate.ACK
        self.acks.taken(request, message)  # terminated while it waited: acknowledged now
        try:
            if request.acks_late and message is not None:
                if request.message.id in self._stale:
                    self._stale.discard(request.message.id)
                    logger.warning("Task %s: not acknowledged, its channel is gone; the broker "
                                   "delivers it again", request.label)
                else:
                    settle_message(message, fate)
        finally:
            # Also when the settle fails: a connection that broke under it takes the
            # message back to the broker, and a request left active would hold a warm
            # shutdown for ever, waiting for a task that has ended.
            self._drop_active(request)


def _log_connection_retry(exc: BaseException, interval: float) -> None:
    logger.error("consumer: cannot connect to the broker (%s); trying again in %.0fs", exc, interval)


def _id_for_log(task_id: str | None) -> str:
    return loggable(task_id) if task_id else "(no task id)"


def _plain_delivery_info(info: Any) -> dict:
    # delivery_info may hold channel objects; a Request must pickle, so keep the plain facts.
    keep = ("exchange", "routing_key", "priority", "redelivered")
    return {key: info.get(key) for key in keep if info and key in info}
