"""CompiledRead: the SQL is compiled once, and rows come back as the ORM returns them (SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime

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
    arguments=(str, str))


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
                          .values_list("task_id"))
    with pytest.raises(ValueError, match=r"argument\(s\) \[0\] do not reach the SQL as given"):
        prefix.rows("default", "t.")


def test_datetime_arguments_are_adapted_as_the_orm_adapts_them():
    # On SQLite a datetime parameter is sent as text: the marker is found in its adapted form.
    done_after = CompiledRead(lambda moment: TaskResult.objects.filter(date_done__gt=moment)
                              .order_by("task_id").values_list("task_id"), arguments=(datetime,))
    TaskResult.objects.create(task_id="early", date_done=datetime(2026, 12, 1, tzinfo=UTC))
    TaskResult.objects.create(task_id="late", date_done=datetime(2026, 12, 3, tzinfo=UTC))
    assert done_after.rows("default", datetime(2026, 12, 2, tzinfo=UTC)) == [("late",)]
    assert done_after.rows("default", datetime(2026, 11, 1, tzinfo=UTC)) == [("early",), ("late",)]


def test_an_argument_of_another_type_is_refused_when_the_read_is_made():
    with pytest.raises(TypeError, match="str or datetime, not <class 'int'>"):
        CompiledRead(lambda n: TaskResult.objects.filter(retries=n), arguments=(int,))
