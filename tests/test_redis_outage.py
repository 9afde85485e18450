"""Redis stopped under a running service and started again: 503s while it is away, nothing accepted
is lost, and the service recovers by itself."""

import threading

import pytest
import requests

from tests.conftest import eventually
from tests.live_server import LiveServer
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow


def test_redis_outage_answers_503_loses_nothing_accepted_and_recovers(tmp_path):
    store = RedisServer(tmp_path, appendonly=True).start()
    server = LiveServer(
        tmp_path / "server", storage={"backend": "redis", "redis_url": store.url}, server={"workers": 2}
    )
    accepted, refused, stop = [], [], threading.Event()

    def produce():
        session = server.session("manager")
        for n in range(100_000):  # bounded; stopped long before
            if stop.is_set():
                return
            response = session.post(server.url("/queues/jobs/push"), json={"message": {"n": n}}, timeout=10)
            if response.status_code == 201:
                accepted.append(n)
            else:
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "storage_unavailable"
                refused.append(n)

    try:
        server.start()
        assert server.session().post(server.url("/queues"), json={"name": "jobs"}).ok
        producer = threading.Thread(target=produce)
        producer.start()
        eventually(lambda: len(accepted) > 50)
        store.stop()
        eventually(lambda: len(refused) > 20)
        health = requests.get(server.url("/health"), timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert "redis is unavailable" in health.json()["storage"]["last_error"]
        pulled = server.session().post(server.url("/queues/jobs/pull"), timeout=10)
        assert (pulled.status_code, pulled.json()["error"]["code"]) == (503, "storage_unavailable")

        store.start()
        eventually(lambda: requests.get(server.url("/health"), timeout=10).status_code == 200)
        after_outage = len(accepted)
        eventually(lambda: len(accepted) > after_outage + 50)
        stop.set()
        producer.join(30)

        drained = []
        session = server.session()
        for _ in range(len(accepted) // 100 + 2):
            response = session.post(server.url("/queues/jobs/pull?max=100"), timeout=10)
            if response.status_code == 204:
                break
            drained += [m["message"]["n"] for m in response.json()["messages"]]
    finally:
        stop.set()
        server.stop()
        store.stop()
    assert len(drained) == len(set(drained)) and drained == sorted(drained), "repeated or reordered"
    assert set(accepted) <= set(drained), "an accepted push was lost"
    # A push whose script ran just as Redis stopped got a 503 (its reply was lost with the
    # connection) but is there: at least once, as docs.md says. The producer had one in flight.
    extra = set(drained) - set(accepted)
    assert extra <= set(refused) and len(extra) <= 1, f"pushes refused with 503 were applied: {sorted(extra)}"
