"""The console's bulk revoke, shared by the result list and the lists of waiting work (edge layer).

Through ``djtasks.app.control.revoke``, one broadcast per batch of ids, as ``result.revoke()``
does for one: a "select all" of a million rows sends a thousand messages, not a million.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest

import djtasks
from djtasks.admin.actions import log_bulk_action


def revoke_in_batches(request: HttpRequest, model_admin: Any, id_batches: Iterable[list[str]],
                      what: str) -> int:
    """Revoke each batch of task ids, write one history entry, tell the user; return how many.

    ``what`` names the tasks in the message ("task(s)", "waiting task(s)").
    """
    count = 0
    for ids in id_batches:
        if ids:
            djtasks.app.control.revoke(ids)
            count += len(ids)
    message = f"Revoked {count} {what}."
    log_bulk_action(request, model_admin.model, message)
    model_admin.message_user(request, message, messages.SUCCESS)
    return count
