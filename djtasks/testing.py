"""InProcessWorker: run the tasks a test queued, in the test's own process (edge layer).

    from djtasks.testing import InProcessWorker

    @override_settings(DJTASKS={"broker_url": "memory://"})
    def test_signup_sends_mail(db):
        result = send_welcome.delay(user.pk)
        with InProcessWorker() as worker:
            worker.join()            # re-raises the task's own exception, if it failed
        assert result.get() == "sent"

It is the real consumer and executor on a solo pool: messages go through the broker and
the protocol, results through the backend. Nothing is mocked and nothing runs eagerly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType

import djtasks
from djtasks import states
from djtasks.application import App
from djtasks.exceptions import TimeoutError as JoinTimeoutError
from djtasks.models import ParkedMessage
from djtasks.task import Request
from djtasks.worker.consumer import Consumer
from djtasks.worker.executor import Executor
from djtasks.worker.features import Feature
from djtasks.worker.pools import SoloPool
from djtasks.worker.pools.base import Outcome
from djtasks.worker.release import EtaRelease
from djtasks.worker.settlement import Fate


class _Unsuccessful(Feature):
    """Remember which requests did not succeed, for join() to re-raise."""

    def __init__(self) -> None:
        self.requests: list[tuple[Request, Outcome]] = []

    def after_complete(self, request: Request, outcome: Outcome, fate: Fate) -> None:
        # A retry, an Ignore or a Reject is how the task chose to end, not a failure to raise.
        if not outcome.ok or outcome.value.state == states.FAILURE:
            self.requests.append((request, outcome))


class InProcessWorker:
    """Consume ``queues`` of ``app`` (default: djtasks.app) in this thread, on demand."""

    def __init__(self, app: App | None = None, queues: Sequence[str] | None = None,
                 features: Sequence[Feature] = ()) -> None:
        """``features``: worker features of the test's own, after the worker's (see Feature)."""
        self.app = app or djtasks.app
        self.queues = list(queues or [self.app.settings.task_default_queue])
        self.pool = SoloPool(1, Executor(self.app, manage_connections=False))
        self.unsuccessful = _Unsuccessful()
        self.consumer = Consumer(self.app, self.pool, self.queues, hostname="testing@localhost",
                                 prefetch_count=1,
                                 extra_features=[*features, self.unsuccessful])
        # No release thread here: join() sends parked ETA messages back itself once due.
        self.release = EtaRelease(self.app, "testing@localhost")
        self._started = False

    def __enter__(self) -> InProcessWorker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        if not self._started:
            self.pool.start()
            self.consumer.connect()
            self._started = True

    def join(self, timeout: float = 10.0, propagate: bool = True) -> None:
        """Run queued tasks until every queue is empty; re-raise the first failure's exception.

        Tasks queued by the tasks themselves run too. Raises djtasks' TimeoutError if the
        queues are still not empty after ``timeout`` seconds.
        """
        self.start()
        deadline = time.monotonic() + timeout
        while True:
            self.consumer.process_completions()  # before looking: a done request is still "active"
            if self._idle():
                break
            if time.monotonic() > deadline:
                raise JoinTimeoutError(f"queues {self.queues} not empty after {timeout} s")
            self.consumer.step()
        if propagate and self.unsuccessful.requests:
            request, outcome = self.unsuccessful.requests.pop(0)
            self.unsuccessful.requests.clear()
            if outcome.lost is not None:
                raise outcome.lost.as_error()
            self.app.AsyncResult(request.message.id).get(timeout=0)

    def close(self) -> None:
        if self._started:
            self.consumer.stop_consuming()
            self.pool.stop(wait=True)
            self.consumer.close()
            self._started = False

    def _idle(self) -> bool:
        if (self.consumer.reserved or self.consumer.active or self.consumer.eta.holding
                or self.consumer.rate_limits.held):
            return False
        assert self.consumer.connection is not None, "the test worker is started"
        channel = self.consumer.connection.default_channel
        if not all(
            self.app.router.queue(name)(channel).queue_declare(passive=True).message_count == 0
            for name in self.queues
        ):
            return False
        # Parked ETA messages are queued too: send back the due ones, wait for the others.
        released = self.release.run_once()
        return not released and not ParkedMessage.objects.filter(queue__in=self.queues).exists()
