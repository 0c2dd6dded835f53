"""The e2e tier: the admin in a real headless Chromium, against runserver and real workers.

One browser per run of the tier (Debian's ``chromium``, driven by Playwright through its path:
no browser is ever downloaded), one ``runserver`` and one ``runworker`` per module and
broker, on ``django://`` PostgreSQL and on RabbitMQ. The server and the workers open the
test databases; djtasks' models live on ``postgres`` for all of them (the admin reads them
there: tests/routers.py), Django's own apps on ``default``.

The console's users are written once per module, outside any test transaction, so the
server sees them. A test flushes only djtasks' tables at its end (``available_apps`` in
``E2E_MARKS``): users, sessions and content types stay as the server has cached them, where
a full flush would give the content types new ids under the server's feet. A test that
fails leaves a screenshot and the HTML of each of its pages in ARTIFACTS, and the logs of
the server and the worker in its report.

Without Chromium the tier is skipped locally and fails in CI (CI=true).
"""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.integration import conftest as integration
from tests.integration.conftest import (
    IN_CI,
    ROOT,
    Broker,
    WorkerProcess,
    only_brokers,
    rebind_mailboxes,
    start_process,
    start_worker,
)

CHROMIUM = Path(os.environ.get("DJTASKS_TESTS_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("DJTASKS_TESTS_ARTIFACTS", ROOT / "tests" / "e2e" / "artifacts"))
#: Where djtasks' models are read and written, by the test, the server and the workers.
MODELS_DB = "postgres"
#: The marks of every e2e module: its brokers; committed writes (the server and the workers
#: read them), djtasks' tables emptied after each test and nothing else.
E2E_MARKS = [
    pytest.mark.e2e,
    only_brokers("django-postgres", "amqp"),
    pytest.mark.django_db(transaction=True, databases=["default", MODELS_DB],
                          available_apps=["djtasks"]),
]
#: Every wait on the page; a page answers in milliseconds, a worker in a second or two.
TIMEOUT_MS = 20_000
#: The workers of the tier: arguments stored (the console retries with them), a message that
#: kills its process twice is a dead letter, and a requeued one comes back fast on django://.
WORKER_ENV = {"DJTASKS_TASK_MAX_DELIVERIES": "1", "DJTASKS_RESULT_EXTENDED": "true",
              "DJTASKS_BROKER_TRANSPORT_OPTIONS": '{"visibility_timeout": 3}'}


# The integration tier's fixtures, the tier's too: the module's broker (narrowed to two by
# E2E_MARKS), its own queue, and the test's publishing pointed at both.
broker = integration.broker
queue_name = integration.queue_name
app_settings = integration.app_settings


@dataclass(frozen=True)
class User:
    username: str
    password: str


SUPERUSER = User("e2e-admin", f"pw-{uuid.uuid4().hex}")
STAFF = User("e2e-staff", f"pw-{uuid.uuid4().hex}")


@dataclass(frozen=True)
class Server:
    """A runserver subprocess and the address it answers on."""

    url: str
    process: WorkerProcess


@dataclass(frozen=True)
class RunningWorker:
    """A runworker subprocess and the hostname it reports (its Worker row, its mailbox)."""

    hostname: str
    process: WorkerProcess


def require_browser() -> None:
    """Skip (locally) or fail (in CI) when Debian's chromium is not installed."""
    if not CHROMIUM.exists():
        message = f"no browser at {CHROMIUM} (apt-get install chromium; .ci/run does it)"
        if IN_CI:
            pytest.fail(message + " (CI requires the e2e tier)")
        pytest.skip(message)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole tier; each test opens its own context.

    Playwright's sync API keeps its event loop set as this thread's running loop until it
    stops, and Django refuses queries from a thread with a running loop. The tests never
    query from inside that loop's coroutines, so the check is lifted while the browser is
    up, and only then: the package scope stops it before the next tier runs.
    """
    require_browser()
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module", autouse=True)
def models_on_postgres() -> Iterator[None]:
    """Route djtasks' models to MODELS_DB in this process and every process it starts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJTASKS_TESTS_MODELS_DB", MODELS_DB)
        yield


@pytest.fixture(autouse=True)
def publish_to_module_queue(app_settings: dict) -> dict:
    """Point the test's own publishing at the module's broker and queue."""
    return app_settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: WorkerProcess, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers (any HTTP status); fail early if the server exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            pass
        if process.process.poll() is not None:
            raise AssertionError(f"runserver exited ({process.process.returncode}):\n{process.log()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"runserver did not answer {url} in {timeout}s:\n{process.log()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(broker: Broker, queue_name: str, django_db_setup: None) -> Iterator[Server]:
    """``runserver`` on a free loopback port, on the test databases and the module's broker."""
    port = free_port()
    process = start_process(["runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
                            broker, queue_name, env={"DJANGO_SETTINGS_MODULE": "tests.e2e.settings"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/admin/login/", process)
    except AssertionError:
        process.stop()
        raise
    yield Server(url, process)
    process.stop()


@pytest.fixture(scope="module")
def worker(broker: Broker, queue_name: str, django_db_setup: None) -> Iterator[RunningWorker]:
    """One prefork worker (concurrency 2) per module and broker, on the module's queue."""
    hostname = f"e2e-{uuid.uuid4().hex[:8]}@localhost"
    process = start_worker(broker, queue_name, "-c", "2", "-n", hostname, env=WORKER_ENV)
    yield RunningWorker(hostname, process)
    process.stop()


@pytest.fixture
def worker_mailbox(broker: Broker, worker: RunningWorker) -> RunningWorker:
    """The module's worker, its mailbox bound again after the last test's flush (django://)."""
    rebind_mailboxes(broker, [worker.hostname])
    return worker


@pytest.fixture(scope="module")
def console_users(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[None]:
    """A superuser and a staff user who may view djtasks' pages and do nothing else."""
    from django.contrib.auth.models import Permission
    from django.contrib.auth.models import User as DjangoUser
    from django.contrib.sessions.models import Session

    with django_db_blocker.unblock():
        DjangoUser.objects.create_superuser(SUPERUSER.username, "", SUPERUSER.password)
        staff = DjangoUser.objects.create_user(STAFF.username, "", STAFF.password, is_staff=True)
        staff.user_permissions.set(Permission.objects.filter(content_type__app_label="djtasks",
                                                             codename__startswith="view_"))
    yield
    with django_db_blocker.unblock():  # the next tiers start from empty tables
        DjangoUser.objects.filter(username__in=[SUPERUSER.username, STAFF.username]).delete()
        Session.objects.all().delete()


@pytest.fixture
def open_page(request: pytest.FixtureRequest, browser: Browser, server: Server,
              console_users: None) -> Iterator[Callable[[User], Page]]:
    """Open a page logged in as a user, in a browser context of its own."""
    contexts = []
    request.node.e2e_pages = []  # read by the report hook when the test fails

    def factory(user: User) -> Page:
        context = browser.new_context(base_url=server.url)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        request.node.e2e_pages.append(page)
        log_in(page, user)
        return page

    yield factory
    for context in contexts:
        context.close()


def log_in(page: Page, user: User) -> None:
    """Log in through the admin's own login form."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", user.password)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))


@pytest.fixture
def admin_page(open_page: Callable[[User], Page]) -> Page:
    return open_page(SUPERUSER)


@pytest.fixture
def staff_page(open_page: Callable[[User], Page]) -> Page:
    return open_page(STAFF)


def save_artifacts(item: pytest.Item) -> list[str]:
    """Save a screenshot and the HTML of each page of ``item``; return their paths."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid.rsplit("/", 1)[-1])
    saved = []
    for number, page in enumerate(getattr(item, "e2e_pages", []), start=1):
        base = ARTIFACTS / f"{stem}-{number}"
        try:
            page.screenshot(path=f"{base}.png", full_page=True)
            Path(f"{base}.html").write_text(page.content())
        except Exception as exc:  # a closed page or a dead browser: say so, keep the report
            saved.append(f"{base}: not saved ({exc})")
            continue
        saved += [f"{base}.png", f"{base}.html"]
    return saved


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when in ("setup", "call") and report.failed:
        saved = save_artifacts(item)
        if saved:
            report.sections.append(("e2e screenshots and HTML", "\n".join(saved)))
        funcargs = getattr(item, "funcargs", {})
        if isinstance(funcargs.get("server"), Server):
            report.sections.append(("runserver log", funcargs["server"].process.log()))
        if isinstance(funcargs.get("worker"), RunningWorker):
            report.sections.append(("worker log", funcargs["worker"].process.log()))
    return report
