"""Stored results and tracebacks cut to ``result_max_size``, saying so (storage layer).

One task that returns a 50 MB list, or fails with a traceback of a million frames' worth of
text, must not turn every read of the result table (the admin's list, a chord's join) into
a 50 MB read. What is over the limit is cut, and the cut is said in the stored value itself:

- a result becomes a string, the start of its JSON text followed by ``CUT_MARK``;
- an exception keeps its type, and its message is cut the same way;
- a traceback keeps its end (the frames nearest the error and the error's own line), after
  a first line that says how much was left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

CUT_MARK = " ...[cut: {size:,} bytes as JSON, over result_max_size {limit:,}]"
TRACEBACK_CUT = ("[cut: the first {left_out:,} characters of this traceback of {size:,}, "
                 "over result_max_size {limit:,}]\n")


def capped_value(value: Any, limit: int | None) -> Any:
    """``value``, or what is stored in its place when its JSON text is over ``limit`` bytes.

    TypeError, ValueError or RecursionError when ``value`` cannot be encoded at all.
    """
    if limit is None or _is_small(value):
        return value
    text = json.dumps(value, cls=DjangoJSONEncoder)
    if len(text) <= limit:
        return value
    if _is_exception(value):
        rest = len(json.dumps({**value, "exc_message": [""]}, cls=DjangoJSONEncoder))
        message = json.dumps(value["exc_message"], cls=DjangoJSONEncoder)
        return {**value, "exc_message": [_cut(message, len(text), limit, budget=max(limit - rest, 0))]}
    return _cut(text, len(text), limit)


def capped_traceback(text: str, limit: int | None) -> str:
    """``text``, or its end after a line saying what was left out, when over ``limit``."""
    if limit is None or len(text) <= limit:
        return text
    kept = max(limit - len(TRACEBACK_CUT) - 40, 0)  # the first line's numbers take <40 more
    left_out = len(text) - kept
    return TRACEBACK_CUT.format(left_out=left_out, size=len(text), limit=limit) + text[left_out:]


def _cut(text: str, size: int, limit: int, budget: int | None = None) -> str:
    """The start of ``text`` and the mark, as a string whose own JSON fits in ``budget``."""
    budget = limit if budget is None else budget
    mark = CUT_MARK.format(size=size, limit=limit)
    kept = max(budget - len(mark) - 2, 0)  # 2: the quotes around the stored string
    while True:
        cut = text[:kept] + mark
        over = len(json.dumps(cut)) - budget  # the quotes and backslashes of text, escaped
        if over <= 0 or kept == 0:
            return cut
        kept = max(kept - over, 0)


def _is_small(value: Any) -> bool:
    # Most results are a number, a short string or nothing: no need to encode them twice.
    return value is None or isinstance(value, (bool, int, float)) or (
        isinstance(value, str) and len(value) < 1024)


def _is_exception(value: Any) -> bool:
    return isinstance(value, Mapping) and "exc_type" in value and "exc_message" in value
