"""The canvas end to end in the fast tier: memory:// broker, the in-process worker.

The same examples run over every real broker with runworker processes in
tests/integration/test_canvas.py; here they pin the semantics quickly.
"""

from __future__ import annotations

import pytest

import djtasks
from djtasks import states
from djtasks.canvas import chain, chord, group
from djtasks.exceptions import ChordError, DjtasksError
from djtasks.result import GroupResult
from tests.testapp import tasks
from tests.testapp.tasks import CustomError
from tests.unit.memory_broker import run_queued_tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("memory_broker")]


def test_simple_chain_feeds_each_result_to_the_next():
    result = (tasks.add.s(2, 2) | tasks.add.s(4) | tasks.add.s(8))()
    run_queued_tasks()
    assert result.get(timeout=1) == 16
    assert result.parent.get(timeout=1) == 8
    assert result.parent.parent.get(timeout=1) == 4
    assert result.parent.parent.parent is None


def test_immutable_chain_ignores_the_results():
    result = (tasks.add.si(2, 2) | tasks.add.si(4, 4) | tasks.add.si(8, 8))()
    run_queued_tasks()
    assert (result.get(timeout=1), result.parent.get(timeout=1),
            result.parent.parent.get(timeout=1)) == (16, 8, 4)


def test_chain_of_signature_and_partial():
    result = chain(tasks.add.s(4, 4) | tasks.mul.s(8))()
    run_queued_tasks()
    assert result.get(timeout=1) == 64


def test_chain_steps_share_the_root_and_name_their_parent():
    result = (tasks.add.s(1, 1) | tasks.add.s(1) | tasks.add.s(1))()
    run_queued_tasks()
    first = result.parent.parent
    rows = djtasks.app.backend.get_many([first.id, result.parent.id, result.id])
    assert {meta.root_id for meta in rows.values()} == {first.id}
    assert rows[result.id].parent_id == result.parent.id


def test_failed_step_stops_the_chain_and_fails_what_follows(tmp_path):
    errors = tmp_path / "errors.txt"
    result = chain(tasks.add.s(1, 1), tasks.fail.si("no"), tasks.add.s(1)).on_error(
        tasks.log_error.s(str(errors)))()
    run_queued_tasks()
    with pytest.raises(CustomError, match="no"):
        result.get(timeout=1)
    assert result.parent.state == states.FAILURE
    assert result.parent.parent.get(timeout=1) == 2
    assert errors.read_text().split()[:2] == [result.parent.id, "CustomError"]


def test_group_of_ten_returns_results_in_member_order():
    result = group(tasks.add.s(i, i) for i in range(10))()
    run_queued_tasks()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=1) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert result.ready()
    assert result.successful()
    assert result.completed_count() == 10


def test_group_save_and_restore():
    result = group(tasks.add.s(1, 1), tasks.add.s(2, 2))()
    result.save()
    run_queued_tasks()
    restored = GroupResult.restore(result.id)
    assert restored.get(timeout=1) == [2, 4]


def test_link_callback_gets_the_result_and_is_a_child():
    result = tasks.add.apply_async((2, 2), link=tasks.add.s(16))
    run_queued_tasks()
    assert result.get(timeout=1) == 4
    [child] = result.children
    assert child.get(timeout=1) == 20


def test_callbacks_run_in_order_and_immutable_ones_ignore_the_value():
    result = tasks.add.apply_async((1, 1), link=[tasks.add.s(10), tasks.add.si(5, 5)])
    run_queued_tasks()
    assert [child.get(timeout=1) for child in result.children] == [12, 10]


def test_errback_with_request_exc_traceback_is_called_inline(tmp_path):
    errors = tmp_path / "errors.txt"
    result = tasks.fail.apply_async(("bad",), link_error=tasks.log_error.s(str(errors)))
    run_queued_tasks()
    assert errors.read_text().strip() == f"{result.id} CustomError bad"


def test_one_argument_errback_is_sent_the_parent_id(tmp_path):
    errors = tmp_path / "ids.txt"
    result = tasks.fail.apply_async(link_error=tasks.log_failed_id.s(path=str(errors)))
    run_queued_tasks()
    assert errors.read_text().split() == [result.id]


def test_chord_body_gets_the_header_results_in_order():
    result = chord(tasks.add.s(i, i) for i in range(10))(tasks.xsum.s())
    run_queued_tasks()
    assert result.get(timeout=1) == 90
    assert result.parent.get(timeout=1) == [i + i for i in range(10)]


def test_chord_with_empty_header_runs_its_body_with_an_empty_list():
    result = chord([], tasks.identity.s())()
    run_queued_tasks()
    assert result.get(timeout=1) == []


def test_chord_with_a_failing_header_fails_and_never_runs_the_body(tmp_path):
    errors = tmp_path / "errors.txt"
    body = tasks.xsum.s().on_error(tasks.log_error.s(str(errors)))
    header = [tasks.add.s(1, 1), tasks.fail.si("header"), tasks.add.s(2, 2)]
    result = chord(header, body)()
    run_queued_tasks()
    with pytest.raises(ChordError, match="raised"):
        result.get(timeout=1)
    failed_id = result.parent.results[1].id
    assert failed_id in str(result.result)
    line = errors.read_text().strip()
    assert line.startswith(f"{result.id} ChordError")
    assert failed_id in line


def test_group_followed_by_a_task_in_a_chain_is_a_chord():
    result = (group(tasks.add.s(i, i) for i in range(4)) | tasks.xsum.s())()
    run_queued_tasks()
    assert result.get(timeout=1) == 12


def test_chord_inside_a_chain_and_a_chain_after_it():
    result = chain(tasks.add.s(1, 1), chord([tasks.add.s(1), tasks.add.s(2)], tasks.xsum.s()),
                   tasks.mul.s(10))()
    run_queued_tasks()
    assert result.get(timeout=1) == (3 + 4) * 10


def test_chord_whose_body_is_a_chain():
    result = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.xsum.s() | tasks.mul.s(3))()
    run_queued_tasks()
    assert result.get(timeout=1) == 18


def test_chain_of_groups_upgrades_the_first_to_a_chord():
    result = (group(tasks.add.s(1, 1), tasks.add.s(2, 2)) | group(tasks.identity.s(), tasks.xsum.s()))()
    run_queued_tasks()
    assert result.get(timeout=1) == [[2, 4], 6]


def test_group_of_chains_returns_each_chains_last_result():
    result = group(tasks.add.s(i, i) | tasks.mul.s(2) for i in range(3))()
    run_queued_tasks()
    assert result.get(timeout=1) == [0, 4, 8]


def test_map_starmap_and_chunks_run_as_builtin_tasks():
    mapped = tasks.xsum.map([[1, 2], [3, 4]]).delay()
    starred = tasks.add.starmap([(1, 2), (3, 4)]).delay()
    chunked = tasks.add.chunks(zip(range(10), range(10), strict=True), 3)()
    run_queued_tasks()
    assert mapped.get(timeout=1) == [3, 7]
    assert starred.get(timeout=1) == [3, 7]
    assert chunked.get(timeout=1) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    assert len(tasks.add.chunks([(1, 1)] * 4, 2).group().tasks) == 2


def test_a_chain_of_one_hundred_steps():
    result = chain(tasks.add.s(0, 1), *[tasks.add.s(1) for _ in range(99)])()
    run_queued_tasks()
    assert result.get(timeout=1) == 100


def test_tasks_sent_inside_a_task_are_its_children_and_the_graph_shows_them():
    result = tasks.spawn.delay(2)
    run_queued_tasks()
    ids = result.get(timeout=1)
    assert [child.id for child in result.children] == ids
    assert [value for _, value in result.collect()][1:] == [0, 2]
    text = str(result.graph)
    assert result.id in text
    assert all(task_id in text for task_id in ids)


def test_a_task_id_given_to_a_chain_is_its_last_steps():
    result = (tasks.add.s(1, 1) | tasks.add.s(1)).apply_async(task_id="chain-last")
    run_queued_tasks()
    assert result.id == "chain-last"
    assert result.get(timeout=1) == 3
    assert result.parent.id != "chain-last"


def test_a_next_step_that_cannot_be_sent_fails_the_chain_instead_of_hanging():
    unreadable = tasks.add.s(1).set(not_an_option=5)  # an option no release can send
    result = (tasks.add.s(1, 1) | unreadable | tasks.add.s(1))()
    run_queued_tasks()
    with pytest.raises(DjtasksError, match="could not be sent"):
        result.get(timeout=1)
    assert result.parent.parent.state == states.FAILURE


def test_group_of_chords_and_chord_of_chains_and_chords():
    chords = group(chord([tasks.add.s(i, i), tasks.add.s(1, 1)], tasks.xsum.s()) for i in range(3))()
    mixed = chord([tasks.add.s(1, 1) | tasks.mul.s(10),
                   chord([tasks.add.s(2, 2), tasks.add.s(3, 3)], tasks.xsum.s()),
                   tasks.add.s(5, 5)], tasks.identity.s())()
    run_queued_tasks()
    assert chords.get(timeout=1) == [2, 4, 6]
    assert mixed.get(timeout=1) == [20, 10, 10]
