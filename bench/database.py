"""Prepare the benchmark's databases: create the PostgreSQL one, migrate both (bench layer)."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from bench.systems import ROOT

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/djtasks_bench"


def prepare() -> None:
    """Create the PostgreSQL database if it is missing; apply migrations to both aliases."""
    create_postgres_database(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJTASKS_")}
    env.update(DJANGO_SETTINGS_MODULE="bench.settings", PYTHONPATH=str(ROOT))
    for alias in ("default", "sqlite"):
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--database", alias, "--noinput", "-v", "0"],
            cwd=ROOT, env=env, check=True,
        )


def create_postgres_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
