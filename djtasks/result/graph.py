"""DependencyGraph: results and the tasks they started, as text or Graphviz dot (client layer).

Nodes are results (anything with an ``id``, or any hashable); an edge runs from a parent
to each child it started. The text form (``str(graph)``, ``format()``) is a tree drawn from
each root, one line per node, children indented by four spaces under their parent::

    8f1c… (2 children)
        a0b2… (1 child)
            77de…
        c9e4…

A node with several parents (a chord body, say) is drawn in full under the first one; where
it comes again its line ends in ``(see above)`` and its children are not repeated. Nodes
that only a cycle leads to come after the trees, from the first of them added.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import IO

_INDENT = "    "


class DependencyGraph:
    """A directed graph kept as an adjacency list, in insertion order (Celery's name)."""

    def __init__(self, edges: Iterable[tuple[Hashable, Hashable]] = ()) -> None:
        self._children: dict[Hashable, list[Hashable]] = {}
        self._parents: dict[Hashable, int] = {}
        for parent, child in edges:
            self.add_edge(parent, child)

    def add_arc(self, node: Hashable) -> None:
        """Add ``node`` (Celery's name for adding a vertex); adding it twice is harmless."""
        self._children.setdefault(node, [])
        self._parents.setdefault(node, 0)

    def add_edge(self, parent: Hashable, child: Hashable) -> None:
        """Add an edge ``parent -> child``, adding both nodes if they are new."""
        self.add_arc(parent)
        self.add_arc(child)
        if child not in self._children[parent]:
            self._children[parent].append(child)
            self._parents[child] += 1

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._children)

    def __len__(self) -> int:
        return len(self._children)

    def __contains__(self, node: object) -> bool:
        return node in self._children

    def __getitem__(self, node: Hashable) -> list[Hashable]:
        """Return the children of ``node``, in the order they were added."""
        return list(self._children[node])

    def items(self) -> Iterator[tuple[Hashable, list[Hashable]]]:
        for node, children in self._children.items():
            yield node, list(children)

    def roots(self) -> list[Hashable]:
        """Return the nodes no edge leads to."""
        return [node for node, count in self._parents.items() if count == 0]

    def format(self) -> str:
        """Return the indented text form described in the module docstring."""
        lines: list[str] = []
        drawn: set[Hashable] = set()
        # Roots first; then, in insertion order, what only a cycle leads to.
        for node in [*self.roots(), *self._children]:
            if node not in drawn:
                self._draw(node, 0, drawn, lines)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def _draw(self, node: Hashable, depth: int, drawn: set[Hashable], lines: list[str]) -> None:
        prefix = _INDENT * depth + node_label(node)
        if node in drawn:
            lines.append(f"{prefix} (see above)")
            return
        drawn.add(node)
        children = self._children[node]
        count = len(children)
        lines.append(f"{prefix} ({count} {'child' if count == 1 else 'children'})" if count else prefix)
        for child in children:
            self._draw(child, depth + 1, drawn, lines)

    def to_dot(self, fh: IO[str]) -> None:
        """Write the graph to ``fh`` in Graphviz dot: every node declared, then every edge."""
        fh.write("digraph dependencies {\n")
        for node in self._children:
            fh.write(f"    {_dot_id(node)};\n")
        for node, children in self._children.items():
            for child in children:
                fh.write(f"    {_dot_id(node)} -> {_dot_id(child)};\n")
        fh.write("}\n")

    def __repr__(self) -> str:
        return f"<DependencyGraph: {len(self)} nodes>"


def node_label(node: object) -> str:
    """Name a node by its ``id`` (a result), or by ``str()`` for anything else."""
    return str(getattr(node, "id", node))


def _dot_id(node: object) -> str:
    # Task ids are UUIDs, but a user may name a task id anything: quote and escape it.
    escaped = node_label(node).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
