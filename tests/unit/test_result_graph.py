"""AsyncResult's parent, children, iterdeps, collect, graph and revoke; DependencyGraph's text and dot."""

from __future__ import annotations

import io

import pytest

from djtasks import AsyncResult, states
from djtasks.backends.base import ExecutionInfo, ResultMeta, exception_to_dict
from djtasks.exceptions import IncompleteStream
from djtasks.exceptions import TimeoutError as ResultTimeoutError
from djtasks.result import DependencyGraph, EagerResult
from djtasks.result.graph import node_label


def finish(app, task_id, value=None, children=(), status=states.SUCCESS):
    """Store what a worker would when ``task_id`` ends, with the ids of the tasks it started."""
    app.backend.store(task_id, status, value, info=ExecutionInfo(task_name="tests.t",
                                                                  children=tuple(children)))


def dot_of(graph):
    out = io.StringIO()
    graph.to_dot(out)
    return out.getvalue()


@pytest.fixture
def tree(app):
    """root -> (a, b); a -> c: a finished tree of four tasks."""
    finish(app, "root", 1, ["a", "b"])
    finish(app, "a", 2, ["c"])
    finish(app, "b", 3)
    finish(app, "c", 4)
    return app.AsyncResult("root")


# -- parent and children ----------------------------------------------------------------------


def test_parent_is_none_unless_given_and_never_queried():
    # No django_db mark: a query here would fail the test.
    orphan = AsyncResult("x")
    assert orphan.parent is None
    first = AsyncResult("first")
    second = AsyncResult("second", parent=first)
    assert second.parent is first
    orphan.parent = second
    assert orphan.parent.parent is first
    assert EagerResult("e", ResultMeta("e", states.SUCCESS, 1), parent=first).parent is first


@pytest.mark.django_db
def test_children_are_empty_while_the_task_is_not_ready(app):
    assert app.AsyncResult("pending").children == []
    app.backend.store("running", states.STARTED, info=ExecutionInfo(children=("early",)))
    assert app.AsyncResult("running").children == []


@pytest.mark.django_db
def test_children_come_from_the_stored_ids_with_this_result_as_parent(app, tree, django_assert_num_queries):
    with django_assert_num_queries(1):
        children = tree.children
        assert children == ["a", "b"]
        assert all(isinstance(child, AsyncResult) for child in children)
        assert all(child.parent is tree for child in children)
        assert all(child.app is app for child in children)
        assert tree.children == children  # kept once read: a ready result's children never change
    assert tree.children[0].children == ["c"]
    assert tree.children[0].children[0].parent.parent is tree
    assert app.AsyncResult("c").children == []


@pytest.mark.django_db
def test_forget_drops_the_children_read_before(app, tree):
    assert tree.children == ["a", "b"]
    tree.forget()
    assert tree.children == []


# -- iterdeps, collect ------------------------------------------------------------------------


@pytest.mark.django_db
def test_iterdeps_walks_breadth_first_with_each_parent(tree):
    walked = [(None if parent is None else parent.id, node.id) for parent, node in tree.iterdeps()]
    assert walked == [(None, "root"), ("root", "a"), ("root", "b"), ("a", "c")]


@pytest.mark.django_db
def test_iterdeps_stops_at_a_node_that_is_not_ready(app):
    finish(app, "root", 1, ["a", "b"])
    finish(app, "b", 3, ["d"])
    # "a" has not run: its children are unknown, so the stream is incomplete.
    walk = app.AsyncResult("root").iterdeps()
    assert [node.id for _, node in [next(walk), next(walk)]] == ["root", "a"]
    with pytest.raises(IncompleteStream, match="task a is not ready"):
        next(walk)


@pytest.mark.django_db
def test_iterdeps_intermediate_goes_past_a_node_that_is_not_ready(app):
    finish(app, "root", 1, ["a", "b"])
    finish(app, "b", 3, ["d"])
    walked = [node.id for _, node in app.AsyncResult("root").iterdeps(intermediate=True)]
    assert walked == ["root", "a", "b", "d"]


@pytest.mark.django_db
def test_collect_yields_each_result_and_its_value_in_iterdeps_order(tree):
    collected = list(tree.collect())
    assert [(result.id, value) for result, value in collected] == [
        ("root", 1), ("a", 2), ("b", 3), ("c", 4),
    ]
    assert collected[3][0].parent.id == "a"


@pytest.mark.django_db
def test_collect_raises_the_failure_of_a_node(app):
    finish(app, "root", 1, ["bad"])
    finish(app, "bad", exception_to_dict(ValueError("no")), status=states.FAILURE)
    collecting = app.AsyncResult("root").collect()
    assert next(collecting)[1] == 1
    with pytest.raises(ValueError, match="no"):
        next(collecting)
    values = [value for _, value in app.AsyncResult("root").collect(propagate=False)]
    assert values[0] == 1
    assert isinstance(values[1], ValueError)


@pytest.mark.django_db
def test_collect_waits_for_each_node_up_to_the_timeout(app):
    finish(app, "root", 1, ["slow"])
    collecting = app.AsyncResult("root").collect(timeout=0.05, interval=0.01)
    next(collecting)
    with pytest.raises(ResultTimeoutError, match="slow"):
        next(collecting)


@pytest.mark.django_db
def test_collect_of_a_lone_finished_task_is_itself(app):
    finish(app, "alone", 7)
    assert [(r.id, v) for r, v in app.AsyncResult("alone").collect()] == [("alone", 7)]


# -- graph --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_graph_of_a_finished_tree(tree):
    graph = tree.graph
    assert isinstance(graph, DependencyGraph)
    assert [node.id for node in graph] == ["root", "a", "b", "c"]
    assert graph[tree] == ["a", "b"]
    assert graph.roots() == [tree]
    assert str(graph) == (
        "root (2 children)\n"
        "    a (1 child)\n"
        "        c\n"
        "    b"
    )
    assert graph.format() == str(graph)
    assert dot_of(graph) == (
        "digraph dependencies {\n"
        '    "root";\n'
        '    "a";\n'
        '    "b";\n'
        '    "c";\n'
        '    "root" -> "a";\n'
        '    "root" -> "b";\n'
        '    "a" -> "c";\n'
        "}\n"
    )


@pytest.mark.django_db
def test_graph_of_an_unfinished_tree_is_incomplete(app):
    with pytest.raises(IncompleteStream):
        _ = app.AsyncResult("pending").graph
    finish(app, "root", 1, ["pending"])
    partial = app.AsyncResult("root").build_graph(intermediate=True)
    assert str(partial) == "root (1 child)\n    pending"


def test_a_shared_child_is_drawn_once():
    # A chord body: started by both header tasks.
    graph = DependencyGraph([("g", "h1"), ("g", "h2"), ("h1", "body"), ("h2", "body"), ("body", "done")])
    assert str(graph) == (
        "g (2 children)\n"
        "    h1 (1 child)\n"
        "        body (1 child)\n"
        "            done\n"
        "    h2 (1 child)\n"
        "        body (see above)"
    )
    assert graph.roots() == ["g"]
    assert len(graph) == 5


def test_a_cycle_is_drawn_without_looping():
    graph = DependencyGraph([("x", "y"), ("y", "x")])
    assert graph.roots() == []
    assert str(graph) == "x (1 child)\n    y (1 child)\n        x (see above)"
    graph.add_arc("lonely")
    assert str(graph) == "lonely\nx (1 child)\n    y (1 child)\n        x (see above)"


def test_graph_container_methods():
    graph = DependencyGraph()
    assert str(graph) == ""
    graph.add_arc("a")
    graph.add_arc("a")
    graph.add_edge("a", "b")
    graph.add_edge("a", "b")  # an edge twice is one edge
    assert "a" in graph
    assert "z" not in graph
    assert len(graph) == 2
    assert graph["a"] == ["b"]
    assert graph["b"] == []
    graph["a"].append("mutated")  # a copy: the graph is changed only through its methods
    assert dict(graph.items()) == {"a": ["b"], "b": []}
    assert repr(graph) == "<DependencyGraph: 2 nodes>"


def test_dot_quotes_and_escapes_ids():
    assert dot_of(DependencyGraph([('say "hi"', "back\\slash")])) == (
        "digraph dependencies {\n"
        '    "say \\"hi\\"";\n'
        '    "back\\\\slash";\n'
        '    "say \\"hi\\"" -> "back\\\\slash";\n'
        "}\n"
    )


def test_a_node_is_named_by_its_id():
    assert node_label(AsyncResult("abc")) == "abc"
    assert node_label(42) == "42"


# -- revoke -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_revoke_marks_the_task_revoked(app):
    app.AsyncResult("to-stop").revoke()
    assert app.backend.revoked(["to-stop", "other"]) == {"to-stop"}


@pytest.mark.django_db
def test_revoke_terminate_stores_the_revoke_and_asks_the_workers(app):
    app.AsyncResult("running").revoke(terminate=True, signal="SIGKILL")
    assert app.backend.revoked(["running"]) == {"running"}
