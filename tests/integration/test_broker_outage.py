"""RabbitMQ away for 10 s in the middle of a 5,000-task acks_late drain: nothing is lost.

The worker reaches RabbitMQ through a TCP proxy the test starts (tests/integration/
tcp_proxy.py); cutting it is what a broker restart does to the worker: its connections
drop, and new ones are refused until the broker is back. The test's own publishes go to
RabbitMQ directly. Each task records its run in a file, so lost and duplicated runs are
counted, not guessed.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import AMQP_URL, DATABASES, only_brokers, wait_until
from tests.integration.tcp_proxy import TcpProxy
from tests.testapp import tasks

pytestmark = [pytest.mark.integration,
              pytest.mark.django_db(transaction=True, databases=DATABASES),
              only_brokers("amqp")]

DRAIN = 5000
OUTAGE = 10.0
AMQP_PORT = 5672


@pytest.fixture
def proxy():
    proxy = TcpProxy(AMQP_PORT).start()
    yield proxy
    proxy.close()


def test_an_outage_in_the_middle_of_an_acks_late_drain_loses_nothing(process_factory, proxy,
                                                                    app_settings, tmp_path):
    proxied = AMQP_URL.replace(f":{AMQP_PORT}/", f":{proxy.port}/")
    assert proxied != AMQP_URL
    worker = process_factory("runworker", "-c", "2", env={"DJTASKS_BROKER_URL": proxied},
                             ready=r" ready\.$")
    path = tmp_path / "ran.txt"
    results = [tasks.record_late.delay(str(path), i) for i in range(DRAIN)]

    def ran() -> list[int]:
        lines = path.read_text().splitlines() if path.exists() else []
        return [int(line.split()[1]) for line in lines if line.startswith("done ")]

    wait_until(lambda: len(ran()) >= DRAIN // 3, timeout=120, message="a third of the drain")
    proxy.cut()
    cut_at = time.monotonic()
    worker.wait_for_line(r"connection to broker lost|Cannot connect|broker", timeout=30)
    during = len(ran())
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - cut_at)))  # the outage lasts OUTAGE s
    proxy.restore()
    assert [r.get(timeout=180) for r in results] == list(range(DRAIN))
    runs = ran()
    lost = set(range(DRAIN)) - set(runs)
    duplicates = len(runs) - len(set(runs))
    print(f"RabbitMQ away {OUTAGE:g} s: {DRAIN} sent, {len(lost)} lost, {duplicates} duplicates "
          f"({during} had run when it went)")
    assert not lost
    assert duplicates <= 2 * 4 * 2  # at most the prefetch window at the cut (acks_late)
    assert worker.process.poll() is None, "the worker must live through the outage"
    assert worker.stop() == 0, worker.log()[-4000:]
