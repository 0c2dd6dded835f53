"""runworker --autoscale: the pool grows while tasks wait and shrinks back once idle.

The autoscaler reads only the worker's own state (running and reserved tasks), never the
broker's, so one broker is enough to show it.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings

import djtasks
from tests.integration.conftest import DATABASES, only_brokers, wait_until
from tests.testapp import tasks

EXCHANGE = "djtasks-autoscale-tests"  # a mailbox of its own on the shared broker

pytestmark = [pytest.mark.integration, only_brokers("redis"),
              pytest.mark.django_db(transaction=True, databases=DATABASES)]


def test_the_pool_grows_to_max_under_load_and_shrinks_to_min_after(worker_factory, app_settings,
                                                                   queue_name, tmp_path):
    name = f"auto-{uuid.uuid4().hex[:6]}@localhost"
    worker_factory("-n", name, "--autoscale", "3,1",
                   env={"DJTASKS_WORKER_AUTOSCALE_KEEPALIVE": "1",
                        "DJTASKS_CONTROL_EXCHANGE": EXCHANGE})
    with override_settings(DJTASKS={**app_settings, "control_exchange": EXCHANGE}):
        ask = djtasks.app.control.inspect(destination=[name], timeout=10)

        def processes() -> int:
            return len(ask.stats()[name]["pool"]["processes"])

        assert processes() == 1
        assert ask.stats()[name]["prefetch_count"] == 12  # the window is sized for max
        starts = tmp_path / "starts.txt"
        running = [tasks.clock_in.apply_async((str(starts), f"t{n}", 3), queue=queue_name)
                   for n in range(3)]
        wait_until(lambda: processes() == 3, message="3 processes under load")
        assert sorted(result.get(timeout=30) for result in running) == ["t0", "t1", "t2"]
        wait_until(lambda: processes() == 1, message="back to 1 process")
        changed = djtasks.app.control.autoscale(2, 1, destination=[name], reply=True, timeout=10)
        assert changed == [{name: {"ok": "autoscale now max=2 min=1"}}]

