"""Django settings of the test suite: SQLite as `default`, PostgreSQL as `postgres`.

Worker subprocesses started by the integration tests import these same settings with
DJTASKS_TESTS_ON_TEST_DBS=1, so that they open the databases pytest-django created.
"""

import os
import tempfile
from pathlib import Path

import environ

env = environ.Env()
BASE_DIR = Path(__file__).resolve().parent
# One SQLite file and one PostgreSQL database per test run, so that two runs on one machine
# never share them; set in the environment so the workers a run starts find the same ones.
SQLITE_TEST_PATH = os.environ.setdefault(
    "DJTASKS_TESTS_SQLITE_PATH", str(Path(tempfile.gettempdir()) / f"djtasks-tests-{os.getpid()}.sqlite3"))
POSTGRES_TEST_NAME = os.environ.setdefault("DJTASKS_TESTS_POSTGRES_NAME", f"test_djtasks_{os.getpid()}")
POSTGRES_URL = env.str("DJTASKS_TESTS_POSTGRES_URL", default="postgres://postgres@127.0.0.1:5432/postgres")

SECRET_KEY = "djtasks-tests-not-secret"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "djtasks",
    "tests.testapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": SQLITE_TEST_PATH,
        "TEST": {"NAME": SQLITE_TEST_PATH},
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    },
    "postgres": {**env.db_url_config(POSTGRES_URL), "TEST": {"NAME": POSTGRES_TEST_NAME}},
}
for database in DATABASES.values():
    # As a deployment should: workers keep their connections, checked before each task.
    database["CONN_MAX_AGE"] = 60
    database["CONN_HEALTH_CHECKS"] = True
if env.bool("DJTASKS_TESTS_ON_TEST_DBS", default=False):
    # Under pytest-xdist, pytest-django names each test database "<TEST NAME>_<gwN>"; the
    # processes a test starts inherit PYTEST_XDIST_WORKER and so open that worker's own.
    XDIST_SUFFIX = f"_{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
    for database in DATABASES.values():
        database["NAME"] = database["TEST"]["NAME"] + XDIST_SUFFIX

DATABASE_ROUTERS = ["tests.routers.DjtasksModelsOn", "tests.routers.DjangoAppsOnDefault"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJTASKS: dict[str, object] = {}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"djtasks": {"handlers": ["console"],
                            "level": env.str("DJTASKS_TESTS_LOGLEVEL", default="WARNING")}},
}
