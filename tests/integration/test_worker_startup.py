"""runworker refuses to start cleanly: a clear one-line error, secrets censored, exit 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration


def run_worker(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
                   "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "django", "runworker", *args], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=60, check=False)


def test_unreachable_broker_is_named_with_its_password_censored():
    done = run_worker("-c", "1", DJTASKS_BROKER_URL="amqp://guest:sekrit@127.0.0.1:1//")
    assert done.returncode == 1
    assert "cannot connect to the broker amqp://guest:********@127.0.0.1:1//" in done.stderr
    assert "sekrit" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_unknown_setting_names_the_closest_key():
    done = run_worker(DJTASKS_TASK_ACKS_LAET="true")
    assert done.returncode == 1
    assert "did you mean 'task_acks_late'" in done.stderr


def test_unknown_pool_is_refused():
    done = run_worker("-P", "gevent")
    assert done.returncode != 0
    assert "invalid choice: 'gevent'" in done.stderr
