"""The dashboard page: gathers workers, depths and results, and renders it or its fragment (edge layer)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

import djtasks
from djtasks.dashboard import charts, depths, stats
from djtasks.models import Worker

#: Seconds between two refreshes of the page.
REFRESH_SECONDS = 5


def dashboard_context(app: Any) -> dict[str, Any]:
    """Everything the dashboard shows, read now."""
    now = timezone.now()
    using = getattr(app.backend, "alias", "default")
    day = now - timedelta(days=1)
    workers = list(Worker.objects.with_status(now).order_by("hostname"))
    for worker in workers:
        # The template reads the age from the row, as it cannot call heartbeat_age(now).
        worker.age = worker.heartbeat_age(now)  # type: ignore[attr-defined]
    minutes = stats.throughput(using, now, timedelta(hours=1), timedelta(minutes=1))
    hours = stats.throughput(using, now, timedelta(days=1), timedelta(hours=1))
    return {
        "now": now,
        "workers": workers,
        "depths": depths.queue_depths(app),
        "minute_chart": charts.bar_chart(minutes, "per minute, last hour", label_every=10),
        "hour_chart": charts.bar_chart(hours, "per hour, last day", label_every=3),
        "failing_most": stats.failing_most(using, day),
        "slowest": stats.slowest(using, day),
        "recent_failures": [(row, failure_text(row.result)) for row in stats.recent_failures(using)],
        "refresh_seconds": REFRESH_SECONDS,
    }


def failure_text(result: Any) -> str:
    """``Type: message`` of a stored failure; the template escapes it."""
    if isinstance(result, dict) and "exc_type" in result:
        return f"{result.get('exc_type')}: {result.get('exc_message')}"
    return "" if result is None else str(result)


def dashboard_view(request: HttpRequest, base_context: dict[str, Any]) -> HttpResponse:
    """The whole page, or with ``?fragment=1`` only the part the refresh script swaps in."""
    context = {**base_context, **dashboard_context(djtasks.app)}
    if request.GET.get("fragment"):
        return TemplateResponse(request, "admin/djtasks/dashboard/fragment.html", context)
    return TemplateResponse(request, "admin/djtasks/dashboard/page.html", context)
