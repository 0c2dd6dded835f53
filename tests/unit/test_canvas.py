"""Signature: Celery's partial-call semantics, repr and wire form."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

import djtasks
from djtasks import Signature, signature
from djtasks.testing import InProcessWorker
from tests.testapp import tasks


def test_s_and_signature_carry_args_kwargs_and_options():
    sig = tasks.add.signature((2, 2), countdown=10)
    assert (sig.args, sig.kwargs, sig.options) == ((2, 2), {}, {"countdown": 10})
    assert tasks.add.s(2, y=3).kwargs == {"y": 3}
    assert signature("tests.testapp.tasks.add", args=(3, 4), countdown=10).options == {"countdown": 10}


def test_repr_reads_like_the_call():
    assert repr(tasks.add.s(2, 2)) == "tests.testapp.tasks.add(2, 2)"
    assert repr(tasks.add.s(2, y=3)) == "tests.testapp.tasks.add(2, y=3)"


def test_calling_a_signature_runs_inline_with_partial_args_prepended():
    assert tasks.mul.s(2)(5) == 10
    assert tasks.add.s(y=1)(x=4) == 5


def test_immutable_signature_ignores_call_arguments():
    assert tasks.add.si(2, 2)(100) == 4


def test_clone_prepends_args_merges_kwargs_and_applies_options():
    base = tasks.add.s(2).set(queue="a")
    clone = base.clone((1,), queue="b")
    assert (clone.args, clone.options) == ((1, 2), {"queue": "b"})
    assert base.options == {"queue": "a"}


def test_set_updates_in_place_and_returns_the_signature():
    sig = tasks.add.s(1, 1)
    assert sig.set(priority=5) is sig
    assert sig.options == {"priority": 5}


def test_wire_form_round_trips_through_json():
    sig = tasks.add.s(2, y=3).set(queue="q")
    data = json.loads(json.dumps(sig.to_dict()))
    assert data == {"task": "tests.testapp.tasks.add", "args": [2], "kwargs": {"y": 3},
                    "options": {"queue": "q"}, "subtask_type": None, "immutable": False}
    assert Signature.from_dict(data) == sig
    assert signature(data) == sig


def test_from_dict_refuses_what_is_not_a_signature():
    with pytest.raises(TypeError, match="expected a dict with a 'task' name"):
        Signature.from_dict({"args": []})


def test_from_dict_drops_the_reply_to_of_a_signature_frozen_by_celery():
    # What Celery 5's freeze() writes into each step of a chain it sends.
    data = {"task": "tests.testapp.tasks.add", "args": [4], "kwargs": {},
            "options": {"task_id": "step-2", "reply_to": "7085f0c0-9ac0-37a8-86d3-51bc09fd4eef"},
            "subtask_type": None, "immutable": False}
    assert Signature.from_dict(data).options == {"task_id": "step-2"}


@pytest.mark.django_db
def test_delay_sends_with_partials_and_call_options_win():
    with override_settings(DJTASKS={"broker_url": "memory://", "task_default_queue": "canvas"}):
        result = tasks.add.s(2).set(priority=1).delay(40)
        with InProcessWorker() as worker:
            worker.join()
        assert result.get(timeout=1) == 42
        assert djtasks.app.AsyncResult(result.id).state == "SUCCESS"


def test_delay_checks_the_merged_arguments():
    with pytest.raises(TypeError, match="missing a required argument"):
        tasks.add.s().delay(1)
