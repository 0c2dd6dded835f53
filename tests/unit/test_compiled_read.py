"""CompiledRead: the SQL is compiled once, and rows come back as the ORM returns them (SQLite)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from djtasks import states
from djtasks.backends.compiled import CompiledRead
from djtasks.models import TaskResult

pytestmark = pytest.mark.django_db

BY_ID_AND_NAME = CompiledRead(
    lambda task_id, name: TaskResult.objects
    .filter(task_id=task_id, task_name=name, status__in=states.READY_STATES)
    .order_by().values_list("status", "result", "date_done", "children"),
    arity=2)


def test_rows_match_the_orm_and_each_call_sends_the_same_one_statement():
    TaskResult.objects.create(task_id="a", task_name="t.one", status=states.SUCCESS,
                              result={"x": [1, "two"]}, children=["c"], date_done="2026-12-03T10:00:00Z")
    TaskResult.objects.create(task_id="b", task_name="t.two", status=states.FAILURE, result=None)
    orm = list(TaskResult.objects.filter(task_id="a")
               .values_list("status", "result", "date_done", "children"))
    with CaptureQueriesContext(connection) as queries:
        assert BY_ID_AND_NAME.rows("default", "a", "t.one") == orm
        assert BY_ID_AND_NAME.rows("default", "b", "t.two") == [(states.FAILURE, None, None, [])]
        assert BY_ID_AND_NAME.rows("default", "a", "t.two") == []
    assert orm[0][2].tzinfo is not None, "dates come back aware, through Django's converters"
    assert len({query["sql"].replace("'a'", "?").replace("'b'", "?") for query in queries}) <= 2


def test_wrong_number_of_arguments_names_the_arity():
    with pytest.raises(TypeError, match="takes 2 arguments, not 1"):
        BY_ID_AND_NAME.rows("default", "a")


def test_an_argument_that_does_not_reach_the_sql_unchanged_is_refused():
    # startswith sends "<argument>%": the marker is not found among the parameters.
    prefix = CompiledRead(lambda name: TaskResult.objects.filter(task_name__startswith=name)
                          .values_list("task_id"), arity=1)
    with pytest.raises(ValueError, match=r"argument\(s\) \[0\] do not reach the SQL as text"):
        prefix.rows("default", "t.")
