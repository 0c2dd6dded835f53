"""The integration tier: real runworker processes against every broker.

Each behaviour test is written once and runs over ``django://`` on SQLite and on
PostgreSQL, ``amqp://`` (RabbitMQ) and ``redis://``. A missing service skips its broker
locally and fails the run in CI (CI=true).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import kombu
import pytest
from django.test import override_settings

import djtasks
from djtasks.control import build_mailbox

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DATABASES = ["default", "postgres"]
# Under pytest-xdist each worker (gw0, gw1, ...) has a RabbitMQ virtual host and a Redis
# database of its own, as it has its own test databases: broadcasts, purges and injected
# connection cuts of one never reach the workers another started.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
AMQP_VHOST = f"djtasks-tests-{XDIST_WORKER}" if XDIST_WORKER else "/"
AMQP_URL = os.environ.get("DJTASKS_TESTS_AMQP_URL",
                          "amqp://guest:guest@127.0.0.1:5672/" + ("" if AMQP_VHOST == "/" else AMQP_VHOST))
REDIS_DB = 13 + int(XDIST_WORKER.removeprefix("gw") or 0)
REDIS_URL = os.environ.get("DJTASKS_TESTS_REDIS_URL", f"redis://127.0.0.1:6379/{REDIS_DB}")


@dataclass(frozen=True)
class Broker:
    name: str
    broker_url: str
    result_backend: str
    service: tuple[str, int] | None  # host and port that must answer

    @property
    def database(self) -> str:
        """The database alias of this configuration's results (and of beat's schedule)."""
        return self.result_backend.removeprefix("django-db://") or "default"

    @property
    def is_django(self) -> bool:
        return self.broker_url.startswith("django://")


BROKERS = [
    Broker("django-sqlite", "django://default", "django-db://default", None),
    Broker("django-postgres", "django://postgres", "django-db://postgres", ("127.0.0.1", 5432)),
    Broker("amqp", AMQP_URL, "django-db://postgres", ("127.0.0.1", 5672)),
    Broker("redis", REDIS_URL, "django-db://postgres", ("127.0.0.1", 6379)),
]


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_services(broker: Broker) -> None:
    """Skip (locally) or fail (in CI) when a service this broker needs is down."""
    needed = [("127.0.0.1", 5432)] + ([broker.service] if broker.service else [])
    for host, port in needed:
        if not service_up(host, port):
            message = f"{broker.name}: nothing answers on {host}:{port}"
            if IN_CI:
                pytest.fail(message + " (CI requires every service)")
            pytest.skip(message)


@pytest.fixture(scope="module", params=BROKERS, ids=[b.name for b in BROKERS])
def broker(request: pytest.FixtureRequest) -> Broker:
    require_services(request.param)
    if request.param.name == "amqp":
        ensure_amqp_vhost()
    return request.param


_vhost_ready: list[str] = []


def ensure_amqp_vhost() -> None:
    """Create this xdist worker's RabbitMQ virtual host, once per run (rabbitmqctl is slow)."""
    if AMQP_VHOST == "/" or AMQP_VHOST in _vhost_ready or "DJTASKS_TESTS_AMQP_URL" in os.environ:
        return
    subprocess.run(["rabbitmqctl", "add_vhost", AMQP_VHOST], capture_output=True, timeout=60,
                   check=False)  # already there from an earlier run: fine
    subprocess.run(["rabbitmqctl", "set_permissions", "-p", AMQP_VHOST, "guest", ".*", ".*", ".*"],
                   capture_output=True, timeout=60, check=True)
    _vhost_ready.append(AMQP_VHOST)


def only_brokers(*names: str) -> pytest.MarkDecorator:
    """Run a module over some brokers only (e.g. the django:// ones)."""
    chosen = [b for b in BROKERS if b.name in names]
    return pytest.mark.parametrize("broker", chosen, ids=[b.name for b in chosen], indirect=True,
                                   scope="module")


@pytest.fixture(scope="module")
def queue_name(request: pytest.FixtureRequest, broker: Broker) -> str:
    # A queue of its own per module and broker: nothing left over from another test leaks in.
    module = request.module.__name__.rsplit(".", 1)[-1]
    return f"it-{module}-{broker.name}-{uuid.uuid4().hex[:6]}"


def djtasks_settings(broker: Broker, queue: str, **extra: object) -> dict:
    return {"broker_url": broker.broker_url, "result_backend": broker.result_backend,
            "task_default_queue": queue, **extra}


@pytest.fixture
def app_settings(broker: Broker, queue_name: str) -> Iterator[dict]:
    """Point the test process's default app at the module's broker and queue."""
    values = djtasks_settings(broker, queue_name)
    with override_settings(DJTASKS=values):
        yield values


@dataclass
class WorkerProcess:
    """A runworker subprocess, with its log lines collected as they come."""

    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def _collect(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, pattern: str, timeout: float = 30.0, count: int = 1) -> list[str]:
        """Wait until ``count`` log lines match ``pattern``; return them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found
                if self.process.poll() is not None and not self._reader_alive():
                    raise AssertionError(f"worker exited ({self.process.returncode}) before "
                                         f"{pattern!r}:\n" + self.log())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {count} line(s) matching {pattern!r} in "
                                         f"{timeout}s:\n" + self.log())
                self._changed.wait(min(left, 0.5))

    def _reader_alive(self) -> bool:
        return self._reader.is_alive()

    def log(self) -> str:
        return "\n".join(self.lines[-80:])

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL the worker and its pool children (a process group the test created)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_group()
        self._reader.join(timeout=5)
        self.process.stderr.close()
        return self.process.returncode


def start_worker(broker: Broker, queue: str, *args: str, env: dict | None = None,
                 wait: bool = True) -> WorkerProcess:
    """Start ``manage.py runworker`` on the test databases; wait for its ready line."""
    return start_command("runworker", broker, queue, *args, env=env,
                         ready=r" ready\.$" if wait else None)


def start_command(command: str, broker: Broker, queue: str, *args: str, env: dict | None = None,
                  ready: str | None = None) -> WorkerProcess:
    """Start ``manage.py <command>`` on the test databases; wait for a ``ready`` log line."""
    return start_process([command, "-l", "INFO", *args], broker, queue, env=env, ready=ready)


def start_process(argv: list[str], broker: Broker, queue: str, env: dict | None = None,
                  ready: str | None = None) -> WorkerProcess:
    """Start ``python -m django <argv>`` on the test databases, its stderr collected."""
    process = subprocess.Popen(
        [sys.executable, "-m", "django", *argv],
        cwd=ROOT, env=command_environment(broker, queue, env), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: kill_group() reaches only its pool
    )
    worker = WorkerProcess(process)
    worker._reader = threading.Thread(target=worker._collect, daemon=True)
    worker._reader.start()
    if ready:
        worker.wait_for_line(ready)
    return worker


def run_command(broker: Broker, queue: str, *args: str, timeout: float = 60.0,
                env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``manage.py <args>`` on the test databases to its end; return its output."""
    return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT,
                          env=command_environment(broker, queue, env), capture_output=True,
                          text=True, timeout=timeout, check=False)


def command_environment(broker: Broker, queue: str, env: dict | None = None) -> dict[str, str]:
    """The environment of a manage.py subprocess on this broker and the test databases."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJTASKS_TESTS_ON_TEST_DBS": "1",
        "DJTASKS_BROKER_URL": broker.broker_url,
        "DJTASKS_RESULT_BACKEND": broker.result_backend,
        "DJTASKS_TASK_DEFAULT_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }


@pytest.fixture(scope="module")
def worker(broker: Broker, queue_name: str, django_db_setup: None) -> Iterator[WorkerProcess]:
    """One prefork worker (concurrency 2) per module and broker."""
    process = start_worker(broker, queue_name, "-c", "2")
    yield process
    process.stop()


@pytest.fixture
def process_factory(request: pytest.FixtureRequest, broker: Broker, queue_name: str,
                    django_db_setup: None) -> Iterator[Callable[..., WorkerProcess]]:
    """Start any manage.py command inside one test; every one is stopped at its end."""
    started: list[WorkerProcess] = []
    request.node.started_processes = started  # read by the report hook when the test fails

    def factory(command: str, *args: str, env: dict | None = None,
                ready: str | None = None) -> WorkerProcess:
        process = start_command(command, broker, queue_name, *args, env=env, ready=ready)
        started.append(process)
        return process

    yield factory
    for process in started:
        if process.process.poll() is None:
            process.kill_group()
        process.stop()


@pytest.fixture
def worker_factory(process_factory: Callable[..., WorkerProcess]) -> Callable[..., WorkerProcess]:
    """Start runworker processes inside one test; every one is stopped at its end."""
    def factory(*args: str, env: dict | None = None) -> WorkerProcess:
        return process_factory("runworker", *args, env=env, ready=r" ready\.$")

    return factory


def queue_size(broker: Broker, queue: str) -> int:
    """Messages waiting in ``queue`` (declared if it does not exist yet)."""
    with kombu.Connection(broker.broker_url) as connection:
        channel = connection.default_channel
        bound = kombu.Queue(queue, kombu.Exchange(queue), routing_key=queue)(channel)
        return bound.queue_declare(passive=False).message_count


def holds_ahead(broker: Broker, stats: dict) -> bool:
    """Whether a busy worker holds messages it has not started yet (``inspect reserved``).

    ``stats`` is the worker's ``inspect stats`` answer. Consuming children on Redis and
    django:// take one message at a time (README, "Children that consume"): there, what a
    busy worker has not started waits in its queue instead.
    """
    consuming_children = stats["pool"]["implementation"].endswith(":Fleet")
    return not consuming_children or broker.name == "amqp"


def rebind_mailboxes(broker, names: list[str]) -> None:
    """Bind the workers' mailbox queues again, on django://.

    pytest-django empties every table after each transactional test, the bindings of the
    workers' mailbox queues included (a deployment never loses them); declaring a queue is
    what any process may do, so the test does it again for them.
    """
    if broker.is_django:
        with kombu.Connection(broker.broker_url) as connection:
            for name in names:
                build_mailbox(djtasks.app).get_queue(name)(connection.default_channel).declare()


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05,
               message: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout}s")
        time.sleep(interval)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call" and report.failed:
        # A failing behaviour test is read with the worker's side of the story beside it.
        module_worker = getattr(item, "funcargs", {}).get("worker")
        if isinstance(module_worker, WorkerProcess):
            report.sections.append(("worker log", module_worker.log()))
        for number, process in enumerate(getattr(item, "started_processes", []), start=1):
            report.sections.append((f"process {number} log", process.log()))
    return report
