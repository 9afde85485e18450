"""kill -9 during the operators' changes (memory: the journal on, fsync always; or Redis): a redrive
cut short loses or doubles nothing, and an idempotency key is still known after the restart."""

import threading

import pytest
import requests

from tests.conftest import backend_sections, eventually
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
DEAD_LETTERS = 20_000
JOURNAL_ALWAYS = {"journal": "on", "fsync": "always", "interval_seconds": 3600}


@pytest.fixture(params=["memory", "redis"])
def server(request, tmp_path):
    """A live server with the journal on (fsync always), or on a Redis, which outlives it."""
    if request.param == "memory":
        sections = {"persistence": JOURNAL_ALWAYS}
    else:
        sections = backend_sections("redis", request.getfixturevalue("redis_server"))
    live = LiveServer(tmp_path, queues={"max_messages": DEAD_LETTERS}, **sections)
    live.start()
    yield live
    live.stop()


def every_id(session, server, queue):
    ids, offset = [], 0
    while True:
        page = session.get(server.url(f"/queues/{queue}/messages?limit=100&offset={offset}")).json()
        ids += [m["id"] for m in page["messages"]]
        offset += 100
        if offset >= page["total"]:
            return ids


def test_kill_9_in_the_middle_of_a_large_redrive_loses_and_doubles_nothing(server):
    admin = server.session()
    for name in ("dead", "target"):
        assert admin.post(server.url("/queues"), json={"name": name}).status_code == 201
    pushed = []
    for start in range(0, DEAD_LETTERS, 100):
        batch = {"messages": [{"n": n} for n in range(start, start + 100)]}
        pushed += admin.post(server.url("/queues/dead/push"), json=batch).json()["ids"]

    def redrive():
        try:
            requests.post(
                server.url("/queues/dead/redrive"), json={"to": "target"}, auth=admin.auth, timeout=60
            )
        except requests.ConnectionError:
            pass  # the kill -9 cut it off: what matters is what the journal kept

    worker = threading.Thread(target=redrive)
    worker.start()
    eventually(lambda: admin.get(server.url("/queues/target")).json()["size"] > 0, timeout=30)
    server.kill9()
    worker.join()
    server.start()

    moved, left = every_id(admin, server, "target"), every_id(admin, server, "dead")
    assert moved and left, "the kill came after the redrive had finished"
    assert len(moved) + len(left) == DEAD_LETTERS
    assert sorted(moved + left) == sorted(pushed)
    assert moved == pushed[: len(moved)]  # oldest first, in order


def test_idempotency_key_survives_kill_9(server):
    admin = server.session()
    admin.post(server.url("/queues"), json={"name": "jobs"})
    key = {"Idempotency-Key": "invoice-42"}
    first = admin.post(server.url("/queues/jobs/push"), json={"message": {"total": 12}}, headers=key)
    assert first.status_code == 201
    server.kill9()
    server.start()
    again = admin.post(server.url("/queues/jobs/push"), json={"message": {"total": 12}}, headers=key)
    assert (again.status_code, again.json(), again.headers["Idempotent-Replayed"]) == (
        201,
        first.json(),
        "true",
    )
    assert admin.get(server.url("/queues/jobs")).json()["size"] == 1
