"""The canvas under task_always_eager and ``apply()``: every step runs here and now.

Nothing is published and nothing is read back from the result backend: the broker URL
points nowhere, and no test here may use the database (pytest-django refuses any query
without the django_db mark), so a result that asked the backend would fail its test.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

import djtasks
from djtasks import EagerResult, states, task
from djtasks.canvas import chain, chord, group
from djtasks.result import GroupResult
from tests.testapp import tasks
from tests.testapp.tasks import CustomError

EAGER = {"task_always_eager": True, "broker_url": "amqp://nowhere:1//"}

#: What the recording tasks below saw, in the order they ran.
calls: list[tuple] = []


@task
def note(value, label="note"):
    calls.append((label, value))
    return value


@task(bind=True)
def note_request(self, value):
    calls.append(("request", self.request.id, self.request.parent_id, self.request.root_id))
    return value


@task(bind=True)
def note_place(self):
    calls.append(("place", self.request.group, self.request.group_index))


@task
def on_error_full(request, exc, traceback):
    calls.append(("errback", request.id, type(exc).__name__, str(exc), "CustomError" in traceback))


@task
def on_error_id(task_id):
    calls.append(("errback-id", task_id))
    return task_id


@pytest.fixture(autouse=True)
def _fresh_calls():
    calls.clear()
    yield
    calls.clear()


@pytest.fixture
def eager():
    with override_settings(DJTASKS=EAGER):
        yield djtasks.app
        assert "publisher" not in djtasks.app.__dict__  # never connected to a broker


@pytest.fixture
def eager_propagates():
    with override_settings(DJTASKS={**EAGER, "task_eager_propagates": True}):
        yield djtasks.app


# -- link / link_error ----------------------------------------------------------------------------


@pytest.mark.usefixtures("eager")
def test_link_runs_each_callback_in_order_with_the_value_prepended():
    result = tasks.add.apply_async((2, 3), link=[note.s(label="first"), note.s(label="second")])
    assert result.get() == 5
    assert calls == [("first", 5), ("second", 5)]
    assert [child.get() for child in result.children] == [5, 5]
    assert all(isinstance(child, EagerResult) for child in result.children)


@pytest.mark.usefixtures("eager")
def test_an_immutable_callback_ignores_the_value_and_a_callback_can_be_a_chain():
    result = tasks.add.apply_async((2, 3), link=[note.si(100), tasks.add.s(1) | tasks.mul.s(10)])
    assert calls == [("note", 100)]
    immutable, chained = result.children
    assert immutable.get() == 100
    assert chained.get() == 60  # (5 + 1) * 10
    assert chained.parent.get() == 6


@pytest.mark.usefixtures("eager")
def test_callbacks_get_the_parent_as_parent_and_its_root_as_root():
    result = tasks.add.apply_async((1, 1), task_id="the-parent", link=note_request.s())
    [child] = result.children
    assert calls == [("request", child.id, "the-parent", "the-parent")]


@pytest.mark.usefixtures("eager")
def test_callbacks_do_not_run_after_a_failure():
    result = tasks.fail.apply_async(("no",), link=note.s())
    assert result.failed()
    assert calls == []
    assert result.children == []


@pytest.mark.usefixtures("eager")
def test_errback_taking_request_exc_traceback_gets_them():
    result = tasks.fail.apply_async(("bad input",), task_id="failing", link_error=on_error_full.s())
    assert result.state == states.FAILURE
    assert calls == [("errback", "failing", "CustomError", "bad input", True)]
    assert result.children == []  # called inline, not as a task: it has no result


@pytest.mark.usefixtures("eager")
def test_errback_taking_one_argument_gets_the_failed_tasks_id():
    result = tasks.fail.apply_async(("bad",), task_id="failing", link_error=on_error_id.s())
    assert calls == [("errback-id", "failing")]
    [errback] = result.children
    assert errback.get() == "failing"


@pytest.mark.usefixtures("eager")
def test_errbacks_do_not_run_after_a_success():
    assert tasks.add.apply_async((1, 1), link_error=on_error_id.s()).get() == 2
    assert calls == []


def test_errbacks_run_before_the_failure_propagates(eager_propagates):
    with pytest.raises(CustomError, match="loud"):
        tasks.fail.apply_async(("loud",), task_id="failing",
                               link_error=[on_error_id.s(), on_error_full.s()])
    assert calls == [("errback-id", "failing"), ("errback", "failing", "CustomError", "loud", True)]


@pytest.mark.usefixtures("eager")
def test_a_broken_errback_does_not_keep_the_next_one_from_running(caplog):
    tasks.fail.apply_async(("x",), task_id="failing",
                           link_error=[tasks.add.s(), on_error_id.s()])  # add() needs two args
    assert calls == [("errback-id", "failing")]
    assert "Errback" in caplog.text


@pytest.mark.usefixtures("eager")
def test_signature_link_and_on_error_methods_are_honoured():
    sig = tasks.add.s(2, 2)
    sig.link(note.s())
    assert sig.delay().get() == 4
    assert calls == [("note", 4)]
    failing = tasks.fail.s("oops").on_error(on_error_id.s())
    failed = failing.apply_async(task_id="f1")
    assert calls[-1] == ("errback-id", "f1")
    assert failed.failed()


# -- chain ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("eager")
def test_chain_feeds_results_forward_and_links_parents_back_to_the_first_step():
    result = (tasks.add.s(2, 2) | tasks.add.s(4) | tasks.mul.s(10))()
    assert isinstance(result, EagerResult)
    assert result.get() == 80
    assert result.parent.get() == 8
    assert result.parent.parent.get() == 4
    assert result.parent.parent.parent is None


@pytest.mark.usefixtures("eager")
def test_chain_delay_and_apply_async_take_partial_arguments_and_a_task_id():
    assert chain(tasks.add.s(1), tasks.mul.s(3)).delay(4).get() == 15
    result = chain(tasks.add.s(1, 1), tasks.add.s(1)).apply_async(task_id="last")
    assert (result.id, result.get()) == ("last", 3)


@pytest.mark.usefixtures("eager")
def test_chain_steps_know_their_parent_and_root():
    result = (note_request.si(1) | note_request.si(2) | note_request.si(3)).apply_async()
    first, second, third = result.parent.parent, result.parent, result
    assert calls == [("request", first.id, None, first.id),
                     ("request", second.id, first.id, first.id),
                     ("request", third.id, second.id, first.id)]


@pytest.mark.usefixtures("eager")
def test_a_chains_link_follows_its_last_step_and_link_error_every_step():
    failing = chain(tasks.add.s(1, 1), tasks.fail.si("step two"), note.si("never"),
                    link=note.s(label="done")).on_error(on_error_id.s())
    with pytest.raises(CustomError, match="step two"):
        failing.apply_async()
    # The failed step's errback ran; the step after it and the chain's callback did not.
    assert [entry[0] for entry in calls] == ["errback-id"]
    calls.clear()
    ok = chain(tasks.add.s(1, 1), tasks.add.s(1), link=note.s(label="done")).apply_async()
    assert ok.get() == 3
    assert calls == [("done", 3)]


@pytest.mark.usefixtures("eager")
def test_a_failed_middle_step_stops_the_chain_and_raises_as_in_celery():
    # Without task_eager_propagates the failure is kept in the step's result, and the next
    # step, asking for its value, raises it: nothing after the failed step runs.
    with pytest.raises(CustomError, match="middle"):
        (tasks.add.s(1, 1) | tasks.fail.si("middle") | note.s())()
    assert calls == []


@pytest.mark.usefixtures("eager")
def test_a_failed_last_step_is_the_chains_failed_result():
    result = (tasks.add.s(1, 1) | note.s() | tasks.fail.si("last"))()
    assert result.state == states.FAILURE
    assert isinstance(result.result, CustomError)
    assert result.parent.get() == 2
    assert calls == [("note", 2)]
    with pytest.raises(CustomError, match="last"):
        result.get()


def test_a_failed_step_raises_at_once_with_eager_propagates(eager_propagates):
    with pytest.raises(CustomError, match="first"):
        (tasks.fail.si("first") | note.s())()
    with pytest.raises(CustomError, match="last"):
        (tasks.add.s(1, 1) | tasks.fail.si("last"))()
    assert calls == []


@pytest.mark.usefixtures("eager")
def test_a_chain_embed_as_a_celery_client_sends_it_runs_last_entry_first():
    # Celery's wire form: the steps still to run, last step first.
    embed = [tasks.mul.s(10).to_dict(), tasks.add.s(1).to_dict()]
    result = tasks.add.apply_async((1, 1), chain=embed)
    assert result.get() == 2
    [step] = result.children
    assert step.get() == 3  # add(2, 1): the last entry runs first
    [last] = step.children
    assert last.get() == 30  # mul(3, 10)
    assert last.children == []


# -- group ----------------------------------------------------------------------------------------


def test_group_returns_a_group_result_of_eager_results(eager):
    result = group(tasks.add.s(i, i) for i in range(4))()
    assert isinstance(result, GroupResult)
    assert all(isinstance(member, EagerResult) for member in result.results)
    assert result.get() == [0, 2, 4, 6]
    assert result.ready()
    assert result.successful()
    assert not result.failed()
    assert result.completed_count() == 4


@pytest.mark.usefixtures("eager")
def test_group_members_know_their_group_and_index():
    result = group(note_place.s(), note_place.s()).apply_async(task_id="the-group")
    assert result.id == "the-group"
    assert calls == [("place", "the-group", 0), ("place", "the-group", 1)]


def test_group_with_a_failed_member_keeps_it(eager):
    result = group(tasks.add.s(1, 1), tasks.fail.s("member"), tasks.add.s(2, 2)).delay()
    assert result.ready()
    assert result.failed()
    assert not result.successful()
    assert result.completed_count() == 2
    assert result.get(propagate=False)[0] == 2
    with pytest.raises(CustomError, match="member"):
        result.get()


def test_group_member_failure_raises_with_eager_propagates(eager_propagates):
    with pytest.raises(CustomError, match="member"):
        group(note.s(1), tasks.fail.s("member"), note.s(3))()
    assert calls == [("note", 1)]


@pytest.mark.usefixtures("eager")
def test_group_partial_arguments_and_link_reach_every_member():
    result = group(tasks.add.s(1), tasks.mul.s(2)).apply_async((10,), link=note.s())
    assert result.get() == [11, 20]
    assert sorted(calls) == [("note", 11), ("note", 20)]


@pytest.mark.usefixtures("eager")
def test_group_of_chains():
    result = group(tasks.add.s(1, 1) | tasks.mul.s(10), tasks.add.s(2, 2) | tasks.mul.s(100))()
    assert result.get() == [20, 400]
    assert [member.parent.get() for member in result.results] == [2, 4]


# -- chord ----------------------------------------------------------------------------------------


def test_chord_runs_the_body_with_the_header_results(eager):
    result = chord(tasks.add.s(i, i) for i in range(5))(tasks.xsum.s())
    assert isinstance(result, EagerResult)
    assert result.get() == 20
    assert result.parent.get() == [0, 2, 4, 6, 8]
    assert isinstance(result.parent, GroupResult)


@pytest.mark.usefixtures("eager")
def test_chord_with_an_empty_header_runs_the_body_with_no_results():
    assert chord([], tasks.xsum.s()).apply_async().get() == 0


@pytest.mark.usefixtures("eager")
def test_chord_header_failure_raises_and_the_body_does_not_run():
    with pytest.raises(CustomError, match="header"):
        chord([tasks.add.s(1, 1), tasks.fail.s("header")], note.s())()
    assert calls == []


@pytest.mark.usefixtures("eager")
def test_chord_body_link_and_task_id():
    result = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.xsum.s()).apply_async(
        task_id="body", link=note.s(label="after"))
    assert (result.id, result.get()) == ("body", 6)
    assert calls == [("after", 6)]


@pytest.mark.usefixtures("eager")
def test_chain_with_a_group_then_a_task_is_a_chord():
    result = (tasks.add.s(1, 1) | group(tasks.add.s(10), tasks.mul.s(10)) | tasks.xsum.s())()
    assert result.get() == 32  # [2 + 10, 2 * 10]
    header = result.parent
    assert isinstance(header, GroupResult)
    assert header.get() == [12, 20]
    assert header.parent.get() == 2  # the step before the chord


@pytest.mark.usefixtures("eager")
def test_chain_ending_with_a_group_returns_its_group_result():
    result = (tasks.add.s(1, 1) | group(tasks.add.s(10), tasks.mul.s(10)))()
    assert isinstance(result, GroupResult)
    assert result.get() == [12, 20]
    assert result.parent.get() == 2


@pytest.mark.usefixtures("eager")
def test_chord_body_that_is_a_chain_and_a_chord_inside_a_chain():
    body = tasks.xsum.s() | tasks.mul.s(2)
    result = (tasks.add.s(1, 1) | chord([tasks.add.s(1), tasks.add.s(2)], body) | tasks.add.s(1))()
    assert result.get() == 2 * (3 + 4) + 1
    assert result.parent.get() == 14
    assert result.parent.parent.get() == 7


# -- map, starmap, chunks -------------------------------------------------------------------------


@pytest.mark.usefixtures("eager")
def test_map_and_starmap_run_the_task_over_every_item():
    assert tasks.identity.map([1, "a", None]).delay().get() == [1, "a", None]
    assert tasks.add.starmap([(1, 2), (3, 4)]).apply_async().get() == [3, 7]


def test_chunks_is_a_group_of_starmaps(eager):
    result = tasks.add.chunks([(i, i) for i in range(5)], 2)()
    assert isinstance(result, GroupResult)
    assert result.get() == [[0, 2], [4, 6], [8]]
    assert result.completed_count() == 3


# -- apply() without task_always_eager ------------------------------------------------------------


def test_apply_runs_any_canvas_eagerly_without_the_setting():
    with override_settings(DJTASKS={"broker_url": "amqp://nowhere:1//"}):
        assert not djtasks.app.settings.task_always_eager
        assert tasks.add.s(2, 2).apply().get() == 4
        assert tasks.add.s(2).apply((3,)).get() == 5
        assert (tasks.add.s(1, 1) | tasks.mul.s(5)).apply().get() == 10
        assert group(tasks.add.s(1, 1), tasks.add.s(2, 2)).apply().get() == [2, 4]
        assert chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.xsum.s()).apply().get() == 6
        assert tasks.add.chunks([(1, 1), (2, 2), (3, 3)], 2).apply().get() == [[2, 4], [6]]
        assert tasks.add.starmap([(5, 5)]).apply().get() == [10]
        # Callbacks of an eager run run eagerly too: nothing is published.
        assert tasks.add.apply((1, 2), link=note.s()).children[0].get() == 3
        assert calls == [("note", 3)]
        assert "publisher" not in djtasks.app.__dict__


def test_chord_apply_without_propagate_gives_the_body_the_exceptions():
    with override_settings(DJTASKS={"broker_url": "amqp://nowhere:1//"}):
        result = chord([tasks.add.s(1, 1), tasks.fail.s("kept")], tasks.identity.s()).apply(
            propagate=False)
        first, second = result.get()
        assert first == 2
        assert isinstance(second, CustomError)


def test_signature_apply_honours_eager_propagates_as_task_apply_does():
    with override_settings(DJTASKS={"broker_url": "amqp://nowhere:1//", "task_eager_propagates": True}), \
            pytest.raises(CustomError, match="raised"):
        tasks.fail.s("raised").apply()
    assert tasks.fail.s("kept").apply(throw=False).failed()
