"""CompiledRead: a hot read whose SQL Django compiles once per database (storage layer).

Django compiles a queryset to SQL each time it is evaluated. For the result store's
busiest reads that compiling was most of the cost: one result by its id (twice in every
``AsyncResult.get()``) took 1.8 ms of CPU through ``values_list()``, of which the statement
itself was 0.1 ms on the server; a worker's look for new revocations, up to 20 a second
per process, was a tenth of a busy child's time. A CompiledRead compiles its queryset once,
with a marker where each argument goes, then runs that SQL with the arguments in the
markers' places, through Django's cursor and Django's converters, so that JSON and dates
come back exactly as the ORM returns them.

An argument is text or an aware datetime. A text marker reaches the parameters unchanged;
a datetime marker reaches them unchanged or as the backend adapts it (SQLite: a string),
and a real argument is adapted the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import connections
from django.db.models import QuerySet

Argument = type[str] | type[datetime]


class CompiledRead:
    """``build(*markers)`` returns the queryset; ``rows(alias, *args)`` runs it with ``args``."""

    def __init__(self, build: Callable[..., QuerySet], arguments: tuple[Argument, ...] = (str,)) -> None:
        self._build = build
        self._markers = tuple(_marker(kind, index) for index, kind in enumerate(arguments))
        # alias -> (sql, where each parameter comes from, {column: (converters, expression)})
        self._compiled: dict[str, tuple[str, list[_Source], dict]] = {}

    def rows(self, alias: str, *args: Any) -> list[tuple]:
        if len(args) != len(self._markers):
            raise TypeError(f"this read takes {len(self._markers)} arguments, not {len(args)}")
        sql, sources, converters = self._compiled.get(alias) or self._compile(alias)
        connection = connections[alias]
        params = [source.value(args, connection) for source in sources]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not converters:
            return rows
        return [_converted(row, converters, connection) for row in rows]

    def _compile(self, alias: str) -> tuple[str, list[_Source], dict]:
        connection = connections[alias]
        compiler = self._build(*self._markers).query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        sources = [_source_of(param, self._markers, connection) for param in params]
        missing = set(range(len(self._markers))) - {source.index for source in sources}
        if missing:
            raise ValueError(f"argument(s) {sorted(missing)} do not reach the SQL as given: {sql}")
        converters = compiler.get_converters([column for column, _, _ in compiler.select])
        self._compiled[alias] = compiled = (sql, sources, converters)
        return compiled


class _Source:
    """Where one parameter of the compiled SQL comes from: an argument, or a constant."""

    __slots__ = ("adapted", "constant", "index")

    def __init__(self, index: int = -1, adapted: bool = False, constant: Any = None) -> None:
        self.index, self.adapted, self.constant = index, adapted, constant

    def value(self, args: tuple, connection: Any) -> Any:
        if self.index < 0:
            return self.constant
        argument = args[self.index]
        return connection.ops.adapt_datetimefield_value(argument) if self.adapted else argument


def _marker(kind: Argument, index: int) -> Any:
    if kind is str:
        return f"\x00djtasks-argument-{index}\x00"
    if kind is datetime:
        return datetime(1901, 2, 3, 4, 5, index, 678_901, tzinfo=UTC)  # no real argument's
    raise TypeError(f"a CompiledRead argument is str or datetime, not {kind!r}")


def _source_of(param: Any, markers: tuple, connection: Any) -> _Source:
    for index, marker in enumerate(markers):
        if type(param) is type(marker) and param == marker:
            return _Source(index)
        if isinstance(marker, datetime) and param == connection.ops.adapt_datetimefield_value(marker):
            return _Source(index, adapted=True)
    return _Source(constant=param)


def _converted(row: tuple, converters: dict, connection: Any) -> tuple:
    # What SQLCompiler.apply_converters does, with this thread's connection.
    values = list(row)
    for position, (functions, expression) in converters.items():
        value = values[position]
        for function in functions:
            value = function(value, expression, connection)
        values[position] = value
    return tuple(values)
