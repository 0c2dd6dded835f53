"""Celery-named signals: connect works as a bare decorator and keeps the receiver alive."""

from __future__ import annotations

import gc

from djtasks import App, conf
from djtasks.signals import on_after_configure
from tests.testapp import tasks


def test_on_after_configure_receiver_adds_periodic_tasks_once():
    calls = []

    @on_after_configure.connect
    def setup_periodic_tasks(sender, **kwargs):
        calls.append(sender)
        sender.add_periodic_task(10.0, tasks.add.s(2, 2), name="add every 10")

    gc.collect()  # a weak receiver that the decorator dropped would be gone now
    try:
        app = App(conf.load({}))
        entries = app.periodic_schedule()
        assert app.periodic_schedule() == entries
        assert calls == [app]
        assert entries["add every 10"] == {"task": "tests.testapp.tasks.add", "schedule": 10.0,
                                           "args": [2, 2], "kwargs": {}, "options": {}}
    finally:
        on_after_configure.disconnect(setup_periodic_tasks)


def test_add_periodic_task_names_by_repr_and_merges_options():
    app = App(conf.load({"beat_schedule": {"from-settings": {"task": "x", "schedule": 5}}}))
    name = app.add_periodic_task(30, tasks.add.s(1).set(queue="q"), (9,), expires=20)
    assert name == "tests.testapp.tasks.add(9, 1)"
    schedule = app.periodic_schedule()
    assert schedule[name]["options"] == {"queue": "q", "expires": 20}
    assert "from-settings" in schedule
