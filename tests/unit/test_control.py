"""Control.revoke against the database backend, and the revoke_expires setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from djtasks import App, conf
from djtasks.control import Control, describe
from djtasks.models import RevokedTask


@pytest.mark.django_db
def test_revoke_one_id(app):
    Control(app).revoke("t-1")
    assert app.backend.revoked(["t-1", "t-2"]) == {"t-1"}


@pytest.mark.django_db
@pytest.mark.parametrize("ids", [["t-1", "t-2"], ("t-1", "t-2"), ["t-1", "t-2", "t-1"]])
def test_revoke_several_ids_in_one_call(app, ids, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        Control(app).revoke(ids)
    assert app.backend.revoked(["t-1", "t-2", "t-3"]) == {"t-1", "t-2"}


@pytest.mark.django_db
def test_revoke_nothing_stores_nothing(app, django_assert_num_queries):
    with django_assert_num_queries(0):
        Control(app).revoke([])


@pytest.mark.django_db
def test_a_revoke_lasts_revoke_expires_seconds(app):
    before = datetime.now(UTC)
    Control(app).revoke("t-1")
    expires = RevokedTask.objects.get(task_id="t-1").expires
    assert before + timedelta(days=1) <= expires <= datetime.now(UTC) + timedelta(days=1)


@pytest.mark.django_db
def test_revoke_expires_is_read_from_the_settings():
    short = App(conf.load({"revoke_expires": 60}, {}))
    expired = App(conf.load({}, {"DJTASKS_REVOKE_EXPIRES": "-1"}))
    try:
        Control(short).revoke("t-1")
        expires = RevokedTask.objects.get(task_id="t-1").expires
        assert expires <= datetime.now(UTC) + timedelta(seconds=60)
        Control(expired).revoke("t-2")  # already past: no worker will see it
        assert short.backend.revoked(["t-1", "t-2"]) == {"t-1"}
    finally:
        short.close()
        expired.close()


def test_revoke_expires_is_in_the_settings_table():
    assert conf.OPTIONS["revoke_expires"].default == 86400.0
    assert conf.load({}, {}).revoke_expires == 86400.0
    with pytest.raises(conf.ImproperlyConfigured, match="revoke_expires"):
        conf.load({"revoke_expires": "1 day"}, {})


@pytest.mark.django_db
def test_revoke_terminate_stores_the_revoke_even_when_no_worker_answers():
    on_memory = App(conf.load({"broker_url": "memory://"}, {}))
    try:
        replies = Control(on_memory).revoke(["t-1"], terminate=True, signal="SIGKILL", reply=True,
                                            timeout=0.1)
        assert replies == []
        assert on_memory.backend.revoked(["t-1"]) == {"t-1"}
    finally:
        on_memory.close()


def test_a_destination_must_be_a_list_of_hostnames(app):
    with pytest.raises(TypeError, match="expected a list of worker hostnames, got 'w1@host'"):
        Control(app).ping(destination="w1@host")


def test_describe_prints_celerys_form_sorted_by_worker():
    assert describe([{"w2@h": {"ok": "pong"}}, {"w1@h": {"error": "unknown task 'x'"}},
                     {"w3@h": ["a.add", "a.mul"]}, {"w4@h": []}, {"w5@h": {"pid": 7}}]) == [
        "-> w1@h: ERROR", "    unknown task 'x'", "-> w2@h: OK", "    pong",
        "-> w3@h: OK", "    * a.add\n    * a.mul", "-> w4@h: OK", "    - empty -",
        "-> w5@h: OK", '    {\n        "pid": 7\n    }']


def test_describe_without_the_replies_prints_the_status_lines_only():
    assert describe([{"w1@h": {"ok": "pong"}}], show_reply=False) == ["-> w1@h: OK"]


def test_revoke_refuses_what_is_not_a_task_id(app):
    with pytest.raises(TypeError, match="expected a task id or a sequence of task ids, got 42"):
        Control(app).revoke(42)
    with pytest.raises(TypeError, match="got"):
        Control(app).revoke(["t-1", None])
