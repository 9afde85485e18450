"""The operators' changes in the backends themselves: delays and key lifetimes against a clock,
one key pushed at once from many threads and two instances, and what a restart keeps."""

import json
import threading

import pytest

from app import create_app, shutdown
from queues.backend import Idempotency
from queues.config import load_config
from queues.memory.manager import MemoryQueueManager as QueueManager
from queues.redis_manager import RedisQueueManager
from tests.conftest import basic, write_config


@pytest.fixture
def redis_instances(redis_server):
    """Build RedisQueueManagers on one emptied Redis (as instances of the service); closed after."""
    redis_server.client().flushall()
    made = []

    def make(count=1, clock=None):
        made.extend(RedisQueueManager(redis_server.url, 16, clock=clock) for _ in range(count))
        return made[-count:]

    yield make
    for instance in made:
        instance.close()


def pulled_numbers(manager, queue="jobs", count=10):
    return [json.loads(form)["message"]["n"] for form in manager.pull(queue, count)]


def leased(manager, queue="jobs", seconds=30):
    (form,) = manager.pull(queue, 1, lease=seconds)
    return json.loads(form)


@pytest.fixture(params=["memory", "redis"])
def backend(request, clock):
    """A backend on the test's clock with the queue jobs (2 deliveries, dead letters to dead)."""
    if request.param == "memory":
        manager = QueueManager(clock=clock)
    else:
        (manager,) = request.getfixturevalue("redis_instances")(clock=clock)
    manager.create("dead", 10)
    manager.create("jobs", 10, max_deliveries=2, dead_letter_queue="dead")
    yield manager
    manager.close()


def test_delayed_nack_comes_back_after_its_delay_and_not_before(backend, clock):
    backend.push("jobs", [b'{"n":1}', b'{"n":2}'])
    first = leased(backend)
    backend.nack("jobs", first["receipt"], delay=60, reason="feed down")
    assert pulled_numbers(backend) == [2]
    clock.now += 59.9
    assert backend.pull("jobs", 1) == []
    assert backend.info("jobs")["in_flight"] == 1
    clock.now += 0.2
    back = leased(backend)
    assert (back["id"], back["deliveries"], back["last_nack_reason"]) == (first["id"], 2, "feed down")


def test_dead_letter_note_says_where_when_and_why(backend, clock):
    backend.push("jobs", [b'{"n":1}'])
    backend.nack("jobs", leased(backend)["receipt"])
    backend.nack("jobs", leased(backend)["receipt"], reason="bad data")
    (form,) = backend.pull("dead", 1)
    assert json.loads(form)["dead_letter"] == {
        "source_queue": "jobs",
        "deliveries": 2,
        "dead_lettered_at": "2027-01-15T08:00:00.000Z",
        "reason": "bad data",
    }


def test_messages_dead_lettered_together_keep_their_queue_order(backend, clock):
    backend.push("jobs", [b'{"n":%d}' % n for n in range(8)])
    for _ in range(2):  # two deliveries, each lease ending at the same instant
        assert len(backend.pull("jobs", 8, lease=30)) == 8
        clock.now += 31
        backend.expire_leases()
    assert pulled_numbers(backend, "dead") == list(range(8))


def test_idempotency_key_is_forgotten_after_its_lifetime(backend, clock):
    once = Idempotency("k", "digest", 300)
    ids, size, replayed = backend.push("jobs", [b"{}"], once)
    clock.now += 299
    assert backend.push("jobs", [b"{}"], once) == (ids, size, True) and not replayed
    clock.now += 2
    assert backend.push("jobs", [b"{}"], once)[1:] == (2, False)


def test_idempotency_key_is_forgotten_after_its_lifetime_behind_a_longer_lived_key(backend, clock):
    # As after [queues] idempotency_seconds was lowered across a restart: keys kept from before live longer.
    backend.push("jobs", [b"{}"], Idempotency("old", "digest", 600))
    backend.push("jobs", [b"{}"], Idempotency("new", "digest", 10))
    clock.now += 11
    assert backend.push("jobs", [b'{"n":2}'], Idempotency("new", "other", 10))[1:] == (3, False)


def test_idempotency_key_is_forgotten_after_its_lifetime_among_many_expired_keys(backend, clock):
    backend.create("many", 200)
    for number in range(150):
        backend.push("many", [b"{}"], Idempotency(f"k{number}", "digest", 10))
        clock.now += 0.01
    clock.now += 11
    assert backend.push("many", [b'{"n":2}'], Idempotency("k149", "other", 10))[1:] == (151, False)


def run_at_once(count, target):
    barrier = threading.Barrier(count)
    results = []

    def run(index):
        barrier.wait()
        results.append(target(index))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_sixteen_concurrent_pushes_with_one_key_add_one_message_in_memory():
    qm = QueueManager()
    qm.create("jobs", 100)
    once = Idempotency("one", "d", 300)
    results = run_at_once(16, lambda _: qm.push("jobs", [b'{"n":1}'], once))
    assert len({tuple(ids) for ids, _, _ in results}) == 1
    assert sorted(replayed for _, _, replayed in results) == [False] + [True] * 15
    assert qm.info("jobs")["size"] == 1


def test_sixteen_concurrent_pushes_with_one_key_from_two_instances_sharing_redis_add_one(redis_instances):
    instances = redis_instances(2)
    instances[0].create("jobs", 100)
    once = Idempotency("one", "d", 300)
    results = run_at_once(16, lambda i: instances[i % 2].push("jobs", [b'{"n":1}'], once))
    assert len({tuple(ids) for ids, _, _ in results}) == 1
    assert sorted(replayed for _, _, replayed in results) == [False] + [True] * 15
    assert instances[1].info("jobs")["size"] == 1


def test_snapshot_keeps_notes_and_idempotency_keys(clock):
    qm = QueueManager(clock=clock)
    qm.create("dead", 10)
    qm.create("jobs", 10, max_deliveries=1, dead_letter_queue="dead")
    qm.push("jobs", [b'{"n":1}'], Idempotency("k", "d", 300))
    qm.nack("jobs", leased(qm)["receipt"], reason="bad")
    dead_letters = qm.browse("dead", 10, 0)
    state, _ = qm.snapshot()
    restored = QueueManager.restore(state, clock=clock)
    assert restored.push("jobs", [b'{"n":1}'], Idempotency("k", "d", 300))[2]
    assert restored.browse("dead", 10, 0) == dead_letters
    assert json.loads(dead_letters[0][0])["dead_letter"]["reason"] == "bad"


@pytest.fixture
def journaled(tmp_path):
    """Build apps with the journal on (fsync always) in one folder; each is shut down after the test."""
    apps = []

    def make():
        config = load_config(write_config(tmp_path, persistence={"journal": "on", "fsync": "always"}))
        apps.append(create_app(config))
        return apps[-1].test_client()

    yield make
    for app in apps:
        shutdown(app)


def test_journal_replays_nack_notes_purge_redrive_and_keys(journaled):
    client = journaled()  # no snapshot before the "crash": only the journal has the changes
    admin = basic("admin")
    client.post("/queues", json={"name": "dead"}, headers=admin)
    client.post(
        "/queues", json={"name": "jobs", "max_deliveries": 1, "dead_letter_queue": "dead"}, headers=admin
    )
    client.post("/queues", json={"name": "other"}, headers=admin)
    key = {**admin, "Idempotency-Key": "k"}
    client.post("/queues/jobs/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]}, headers=key)
    client.post("/queues/other/push", json={"message": {"n": 9}}, headers=admin)
    client.post("/queues/other/purge", headers=admin)
    for reason in ("a", "b"):
        receipt = client.post("/queues/jobs/pull?lease=30", headers=admin).json["receipt"]
        client.post("/queues/jobs/nack", json={"receipt": receipt, "reason": reason}, headers=admin)
    client.post("/queues/dead/redrive", json={"max": 1}, headers=admin)
    client.post("/queues/other/push", json={"message": {"n": 10}}, headers=admin)
    receipt = client.post("/queues/other/pull?lease=30", headers=admin).json["receipt"]
    client.post(
        "/queues/other/nack", json={"receipt": receipt, "delay": 600, "reason": "later"}, headers=admin
    )
    assert client.get("/queues/other", headers=admin).json["in_flight"] == 1
    paths = ("/queues/dead/messages", "/queues/jobs/messages")
    before = {path: client.get(path, headers=admin).json for path in paths}

    recovered = journaled()
    for path, shown in before.items():
        assert recovered.get(path, headers=admin).json == shown
    assert [m["message"]["n"] for m in before["/queues/jobs/messages"]["messages"]] == [3, 1]
    assert [m["dead_letter"]["reason"] for m in before["/queues/dead/messages"]["messages"]] == ["b"]
    # The delayed message was in flight at the restart: it is available again at once.
    (other,) = recovered.get("/queues/other/messages", headers=admin).json["messages"]
    assert (other["message"], other["last_nack_reason"]) == ({"n": 10}, "later")
    replay = recovered.post(
        "/queues/jobs/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]}, headers=key
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
