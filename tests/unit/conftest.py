"""Fixtures of the fast tier."""

from __future__ import annotations

import pytest
from django.test import override_settings

from djtasks import App, conf


@pytest.fixture
def app():
    """A fresh App on the default settings: the database result backend on SQLite."""
    made = App(conf.load({}, {}))
    yield made
    made.close()


@pytest.fixture
def memory_broker():
    """The default app on kombu's memory:// broker, for tests that run the in-process worker."""
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "unit"}):
        yield

