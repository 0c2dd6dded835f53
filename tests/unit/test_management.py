"""``manage.py djtasks config``: the effective configuration, secrets censored."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.test import override_settings

from djtasks import conf


def run(*args: str) -> str:
    out = StringIO()
    call_command("djtasks", *args, stdout=out)
    return out.getvalue()


def test_config_prints_every_key():
    output = run("config")
    lines = output.splitlines()
    for key in conf.OPTIONS:
        assert any(line[2:].startswith(f"{key} ") for line in lines), key
    assert "broker_url" in output
    assert "'django://'" in output


def test_config_marks_values_that_differ_from_the_default():
    with override_settings(DJTASKS={"task_default_queue": "jobs"}):
        lines = run("config").splitlines()
    [changed] = [line for line in lines if "task_default_queue" in line]
    [unchanged] = [line for line in lines if "broker_pool_limit" in line]
    assert changed.startswith("* ")
    assert changed.endswith("'jobs'")
    assert unchanged.startswith("  ")


def test_config_censors_the_broker_password():
    with override_settings(DJTASKS={"broker_url": "amqp://u:topsecret@h//"}):
        output = run("config")
    assert "topsecret" not in output
    assert "amqp://u:********@h//" in output


def test_config_censors_nested_secrets():
    options = {"visibility_timeout": 30, "sentinel_kwargs": {"password": "topsecret"}}
    with override_settings(DJTASKS={"broker_transport_options": options}):
        output = run("config", "--json")
    assert "topsecret" not in output
    assert json.loads(output)["broker_transport_options"] == {
        "visibility_timeout": 30, "sentinel_kwargs": {"password": conf.CENSORED},
    }


def test_config_json_is_valid_and_complete():
    with override_settings(DJTASKS={"broker_url": "amqp://u:topsecret@h//",
                                    "accept_content": ["json", "msgpack"]}):
        output = run("config", "--json")
    values = json.loads(output)
    assert set(values) == set(conf.OPTIONS)
    assert values["broker_url"] == "amqp://u:********@h//"
    assert values["accept_content"] == ["json", "msgpack"]
    assert values["task_default_queue"] == "celery"
    assert values["worker_concurrency"] is None
    assert "topsecret" not in output


def test_config_json_of_a_router_callable_is_still_json():
    def router(name, args, kwargs, options, task=None, **kw):
        return None

    with override_settings(DJTASKS={"task_routes": router}):
        values = json.loads(run("config", "--json"))
    assert "router" in values["task_routes"]


def test_config_reads_the_environment(monkeypatch):
    monkeypatch.setenv("DJTASKS_RESULT_BACKEND", "django-db://default")
    with override_settings(DJTASKS={}):  # the default app is rebuilt, reading the environment
        values = json.loads(run("config", "--json"))
    assert values["result_backend"] == "django-db://default"


def test_a_subcommand_is_required():
    with pytest.raises(CommandError):
        call_command("djtasks", stdout=StringIO(), stderr=StringIO())


def test_check_warns_when_workers_would_reconnect_for_every_task(settings):
    database = settings.DATABASES["default"]  # a nested dict: restored by hand below
    try:
        database["CONN_MAX_AGE"] = 0
        warnings = [m for m in run_checks(tags=["djtasks"]) if m.id == "djtasks.W002"]
        assert len(warnings) == 1
        assert "CONN_MAX_AGE" in warnings[0].msg
    finally:
        database["CONN_MAX_AGE"] = 60
    assert not [m for m in run_checks(tags=["djtasks"]) if m.id == "djtasks.W002"]


def test_check_advises_immediate_transactions_for_web_processes_on_sqlite(settings):
    options = settings.DATABASES["default"]["OPTIONS"]  # a nested dict: restored by hand below
    saved = options.pop("transaction_mode")
    try:
        settings.DJTASKS = {"broker_url": "django://"}
        warnings = [m for m in run_checks(tags=["djtasks"]) if m.id == "djtasks.W001"]
        assert len(warnings) == 1
        assert "database is locked" in warnings[0].msg
        assert "'transaction_mode': 'IMMEDIATE'" in warnings[0].hint
    finally:
        options["transaction_mode"] = saved
    assert not [m for m in run_checks(tags=["djtasks"]) if m.id == "djtasks.W001"]


@pytest.mark.parametrize("words", [
    ["inspect", "stats"], ["inspect", "query_task"], ["control", "add_consumer"],
    ["control", "pool_grow"], ["control", "shutdown"], ["status"], ["purge"], ["call"], ["result"]])
def test_every_subcommand_explains_itself(words, capsys):
    with pytest.raises(SystemExit) as exited:
        call_command("djtasks", *words, "--help")
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage:")
    assert len(text.splitlines()) > 3


@pytest.mark.django_db
def test_purge_asks_first_and_purges_nothing_when_told_no(monkeypatch):
    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "n")
    with override_settings(DJTASKS={"broker_url": "memory://"}), \
            pytest.raises(CommandError, match="nothing purged"):
        run("purge", "-Q", "unit-purge")
    assert asked == ["Delete every message waiting in unit-purge? This cannot be undone. [y/N] "]


def test_call_refuses_arguments_that_are_not_a_json_list():
    with pytest.raises(CommandError, match="expected a JSON list"):
        call_command("djtasks", "call", "demo.tasks.add", "--args", '{"x": 1}')
