"""The forms of the worker console's commands, validated as the worker validates (edge layer).

A form refuses what the worker would refuse (a rate it cannot parse, a queue name no
broker can carry), so the user reads the reason beside the field instead of in an error
answer, and nothing malformed is broadcast.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django import forms

from djtasks.utils.broker_names import name_problem
from djtasks.utils.rates import parse_rate

#: The most processes one command may add or remove: a typo must not fork a thousand.
MAX_RESIZE = 64


class PoolResizeForm(forms.Form):
    n = forms.IntegerField(label="Processes", min_value=1, max_value=MAX_RESIZE, initial=1,
                           help_text="how many pool processes (threads) to add or remove")


class AddConsumerForm(forms.Form):
    queue = forms.CharField(label="Queue", max_length=255,
                            help_text="the worker consumes it at once, without a restart")

    def clean_queue(self) -> str:
        queue = self.cleaned_data["queue"].strip()
        problem = name_problem(queue, "queue")
        if problem:
            raise forms.ValidationError(problem)
        return queue


class CancelConsumerForm(forms.Form):
    queue = forms.ChoiceField(label="Queue", help_text="a queue this worker consumes now")

    def __init__(self, *args: Any, queues: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["queue"]).choices = [(name, name) for name in queues]


class RateLimitForm(forms.Form):
    task_name = forms.ChoiceField(label="Task")
    rate_limit = forms.CharField(label="Rate limit", required=False, max_length=32,
                                 help_text='e.g. "10/m", "2/s", "100/h"; blank or 0 removes the limit')

    def __init__(self, *args: Any, task_names: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["task_name"]).choices = [(name, name) for name in task_names]

    def clean_rate_limit(self) -> str:
        rate = self.cleaned_data["rate_limit"].strip()
        try:
            parse_rate(rate)  # the worker's own parser: what passes here, the worker takes
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return rate
