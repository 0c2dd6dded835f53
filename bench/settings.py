"""Django settings of the benchmark: PostgreSQL as ``default``, SQLite as ``sqlite``.

    BENCH_POSTGRES_URL   postgres://postgres@127.0.0.1:5432/djtasks_bench (created if missing)
    BENCH_SQLITE_PATH    <tmp>/djtasks-bench.sqlite3
    BENCH_CONN_MAX_AGE   60: seconds a worker keeps its database connection between tasks

djtasks itself is configured by DJTASKS_* variables, which ``bench.systems`` sets per run.
"""

import importlib.util
import tempfile
from pathlib import Path

import environ

env = environ.Env()

POSTGRES_URL = env.str("BENCH_POSTGRES_URL", default="postgres://postgres@127.0.0.1:5432/djtasks_bench")
SQLITE_PATH = env.str("BENCH_SQLITE_PATH", default=str(Path(tempfile.gettempdir()) / "djtasks-bench.sqlite3"))
CONN_MAX_AGE = env.int("BENCH_CONN_MAX_AGE", default=60)

SECRET_KEY = "djtasks-bench-not-secret"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["djtasks", "bench.benchapp"]
# Celery's Django result backend (the celery-djangodb system), when the bench extra is installed.
if importlib.util.find_spec("django_celery_results") is not None:
    INSTALLED_APPS.append("django_celery_results")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {**env.db_url_config(POSTGRES_URL), "CONN_MAX_AGE": CONN_MAX_AGE},
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": SQLITE_PATH,
        "CONN_MAX_AGE": CONN_MAX_AGE,
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    },
}
DJTASKS = {}
