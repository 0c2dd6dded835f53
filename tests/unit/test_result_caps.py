"""result_max_size: a stored result, exception or traceback over it is cut, and says so."""

from __future__ import annotations

import json

import pytest

from djtasks import App, AsyncResult, conf, states
from djtasks.backends.base import exception_to_dict
from djtasks.backends.caps import capped_traceback, capped_value
from djtasks.models import TaskResult

pytestmark = pytest.mark.django_db
LIMIT = 4096


@pytest.fixture
def app():
    app = App(conf.load({"broker_url": "memory://", "result_max_size": LIMIT}, {}))
    yield app
    app.close()


def test_a_result_over_the_limit_is_stored_as_its_start_and_a_mark(app):
    value = list(range(10_000))
    app.backend.store("big", states.SUCCESS, value)
    stored = AsyncResult("big", app=app).get(timeout=1)
    size = len(json.dumps(value))
    assert isinstance(stored, str)
    assert stored.startswith("[0, 1, 2, 3, ")
    assert stored.endswith(f" ...[cut: {size:,} bytes as JSON, over result_max_size {LIMIT:,}]")
    assert len(json.dumps(TaskResult.objects.get(task_id="big").result)) <= LIMIT


def test_results_within_the_limit_are_stored_as_they_are(app):
    value = {"rows": list(range(100)), "name": "x" * 2000}
    app.backend.store("small", states.SUCCESS, value)
    assert AsyncResult("small", app=app).get(timeout=1) == value


def test_an_exception_keeps_its_type_and_its_message_is_cut(app):
    app.backend.store("failed", states.FAILURE, exception_to_dict(ValueError("y" * 100_000)),
                      traceback="Traceback (most recent call last):\n" + "  frame\n" * 50_000
                                + "ValueError: yyy")
    result = AsyncResult("failed", app=app)
    cut = r"^\[\"yyyy.* \.\.\.\[cut: 100,0\d\d bytes as JSON, over result_max_size 4,096\]$"
    with pytest.raises(ValueError, match=cut):
        result.get(timeout=1)
    assert result.traceback.startswith("[cut: the first ")
    assert result.traceback.endswith("  frame\nValueError: yyy")
    assert len(result.traceback) <= LIMIT
    assert len(json.dumps(TaskResult.objects.get(task_id="failed").result)) <= LIMIT


def test_no_limit_keeps_everything():
    value = list(range(100_000))
    assert capped_value(value, None) is value
    assert capped_traceback("t" * 10**6, None) == "t" * 10**6


def test_a_value_that_cannot_be_encoded_still_raises_for_the_caller_to_store_failure():
    with pytest.raises(TypeError):
        capped_value([object()] * 2000, LIMIT)


def test_the_default_limit_is_64_kib():
    assert conf.load({}, {}).result_max_size == 65536
