"""runworker refuses to start cleanly: a clear one-line error, secrets censored, exit 1."""

from __future__ import annotations

import os
import pwd
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


UNREACHABLE = "amqp://guest:x@127.0.0.1:1//"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a worker started as root warns")


@as_root
def test_a_worker_started_as_root_says_how_to_drop_privileges():
    done = run_worker("-c", "1", DJTASKS_BROKER_URL=UNREACHABLE)
    assert "running as root: any task message runs with root's rights" in done.stderr
    assert "pass --uid (and --gid)" in done.stderr


@as_root
def test_uid_drops_root_before_the_worker_starts_and_the_warning_goes():
    nobody = pwd.getpwnam("nobody")
    done = run_worker("-l", "INFO", "-c", "1", "--uid", "nobody", DJTASKS_BROKER_URL=UNREACHABLE)
    assert f"running as uid {nobody.pw_uid}, gid {nobody.pw_gid}" in done.stderr
    assert "running as root" not in done.stderr


def test_an_unknown_uid_is_refused_by_name():
    done = run_worker("--uid", "no-such-user")
    assert done.returncode != 0
    assert "--uid: no such user: 'no-such-user'" in done.stderr


def test_a_broker_password_with_an_unescaped_slash_is_refused_without_showing_it():
    done = run_worker("-c", "1", DJTASKS_BROKER_URL="amqp://guest:sek/rit@127.0.0.1:1//")
    assert done.returncode == 1
    assert "holds an unescaped '/': percent-encode it" in done.stderr
    assert "sek" not in done.stderr + done.stdout
    assert "rit@" not in done.stderr + done.stdout
