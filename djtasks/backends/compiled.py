"""CompiledRead: a hot read whose SQL Django compiles once per database (storage layer).

Django compiles a queryset to SQL each time it is evaluated. For the result store's
busiest read, one result by its id (twice in every ``AsyncResult.get()``), the compiling
was most of the cost: 1.8 ms of CPU for a one-row ``values_list()`` of 14 columns whose
statement ran in 0.1 ms on the server. A CompiledRead compiles its queryset once, with a
marker where each argument goes, then runs that SQL with the arguments in the markers'
places, through Django's cursor and Django's converters, so that JSON and dates come back
exactly as the ORM returns them.

The arguments are text: each marker is a string, and a text field passes a string through
unchanged to the parameters, so it can be found there by equality.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import QuerySet


class CompiledRead:
    """``build(*markers)`` returns the queryset; ``rows(alias, *args)`` runs it with ``args``."""

    def __init__(self, build: Callable[..., QuerySet], arity: int) -> None:
        self._build = build
        self._markers = tuple(f"\x00djtasks-argument-{index}\x00" for index in range(arity))
        # alias -> (sql, where each parameter comes from, {column: (converters, expression)})
        self._compiled: dict[str, tuple[str, list[Any], dict]] = {}

    def rows(self, alias: str, *args: str) -> list[tuple]:
        if len(args) != len(self._markers):
            raise TypeError(f"this read takes {len(self._markers)} arguments, not {len(args)}")
        sql, sources, converters = self._compiled.get(alias) or self._compile(alias)
        params = [args[source] if isinstance(source, int) else source.value for source in sources]
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not converters:
            return rows
        return [_converted(row, converters, connection) for row in rows]

    def _compile(self, alias: str) -> tuple[str, list[Any], dict]:
        compiler = self._build(*self._markers).query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        index_of = {marker: index for index, marker in enumerate(self._markers)}
        sources: list[Any] = [index_of[param] if isinstance(param, str) and param in index_of
                              else _Constant(param) for param in params]
        missing = set(range(len(self._markers))) - {s for s in sources if isinstance(s, int)}
        if missing:
            raise ValueError(f"argument(s) {sorted(missing)} do not reach the SQL as text: {sql}")
        converters = compiler.get_converters([column for column, _, _ in compiler.select])
        self._compiled[alias] = compiled = (sql, sources, converters)
        return compiled


def _converted(row: tuple, converters: dict, connection: Any) -> tuple:
    # What SQLCompiler.apply_converters does, with this thread's connection.
    values = list(row)
    for position, (functions, expression) in converters.items():
        value = values[position]
        for function in functions:
            value = function(value, expression, connection)
        values[position] = value
    return tuple(values)


class _Constant:
    """A parameter of the compiled SQL that is not an argument (a status list, say)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value
