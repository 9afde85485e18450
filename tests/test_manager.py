"""Both backends as plain Python (MemoryQueueManager and RedisQueueManager on a real Redis): FIFO, limits,
long polls and many threads at once; and the memory backend's snapshots."""

import json
import threading
import time

import pytest

from queues import message
from queues import redis_manager as redis_manager_module
from queues.backend import UNLIMITED_WAITERS, QueueBackend
from queues.errors import (
    InvalidQueueName,
    QueueExists,
    QueueFull,
    QueueNotFound,
    SchemaChanged,
    StorageUnavailable,
)
from queues.memory.manager import MemoryQueueManager
from queues.queue_info import FIELDS
from queues.redis_manager import RedisQueueManager


def bodies(*numbers):
    return [b'{"n":%d}' % n for n in numbers]


def pulled_bodies(rendered):
    """The message bodies of pulled messages, as compact JSON bytes like bodies() makes."""
    return [json.dumps(json.loads(r)["message"], separators=(",", ":")).encode() for r in rendered]


@pytest.fixture(params=["memory", "redis"])
def make_manager(request):
    """Build an empty manager of the backend; the Redis one on an emptied database of a real Redis."""
    made = []

    def make(max_waiting=UNLIMITED_WAITERS, connections=16):
        if request.param == "memory":
            made.append(MemoryQueueManager(max_waiting=max_waiting))
        else:
            redis_server = request.getfixturevalue("redis_server")
            redis_server.client().flushall()
            made.append(RedisQueueManager(redis_server.url, connections, max_waiting))
        return made[-1]

    yield make
    for manager in made:
        manager.close()


@pytest.fixture
def manager(make_manager):
    qm = make_manager()
    qm.create("q", max_messages=10)
    return qm


@pytest.fixture
def memory_manager():
    qm = MemoryQueueManager()
    qm.create("q", max_messages=10)
    return qm


def test_both_backends_provide_the_whole_backend_interface(manager):
    assert isinstance(manager, QueueBackend)


def test_both_backends_give_queue_info_with_the_same_fields_in_the_same_order(manager):
    manager.create("dead", 5)
    manager.create("jobs", 5, schema="job", max_deliveries=3, dead_letter_queue="dead")
    manager.push("jobs", bodies(1, 2))
    manager.pull("jobs", 1, lease=30)
    info = manager.info("jobs")
    assert list(info) == list(FIELDS)
    assert (info["size"], info["in_flight"], info["max_deliveries"], info["dead_letter_queue"]) == (
        2,
        1,
        3,
        "dead",
    )
    assert info["created_at"].endswith("Z") and info["pushed_total"] == 2 and info["pulled_total"] == 1
    assert [list(listed) for listed in manager.list()] == [list(FIELDS)] * 3


def test_pull_returns_messages_in_push_order(manager):
    manager.push("q", bodies(1))
    manager.push("q", bodies(2, 3))
    assert pulled_bodies(manager.pull("q", 10)) == bodies(1, 2, 3)


def test_push_returns_distinct_increasing_ids_and_the_size(manager):
    ids, size, _ = manager.push("q", bodies(1, 2, 3))
    assert size == 3
    assert len(set(ids)) == 3 and ids == sorted(ids)
    assert [json.loads(r)["id"] for r in manager.pull("q", 3)] == ids


def test_batch_that_does_not_fit_is_refused_whole(manager):
    manager.push("q", bodies(*range(8)))
    with pytest.raises(QueueFull):
        manager.push("q", bodies(8, 9, 10))
    assert manager.info("q")["size"] == 8
    manager.push("q", bodies(8, 9))
    assert manager.info("q")["size"] == 10


def test_create_twice_raises_queue_exists(manager):
    with pytest.raises(QueueExists):
        manager.create("q", 5)


@pytest.mark.parametrize("name", ["", "-a", "a/b", "a b", "a" * 65, None, "é"])
def test_bad_names_raise_invalid_queue_name_before_lookup(manager, name):
    with pytest.raises(InvalidQueueName):
        manager.info(name)


def test_operations_on_a_missing_queue_raise_queue_not_found(manager):
    for call in (
        lambda: manager.push("x", bodies(1)),
        lambda: manager.pull("x"),
        lambda: manager.delete("x"),
    ):
        with pytest.raises(QueueNotFound):
            call()


def test_delete_returns_the_number_of_messages_and_forgets_them(manager):
    manager.push("q", bodies(1, 2))
    assert manager.delete("q") == 2
    manager.create("q", 10)
    assert manager.pull("q") == []


def test_waiting_pull_is_woken_by_a_push(make_manager):
    qm = make_manager()
    qm.create("q", 10)
    result = {}

    def pull():
        started = time.monotonic()
        result["messages"] = qm.pull("q", 1, wait=10)
        result["elapsed"] = time.monotonic() - started

    puller = threading.Thread(target=pull)
    puller.start()
    time.sleep(0.2)
    qm.push("q", bodies(7))
    puller.join(5)
    assert pulled_bodies(result["messages"]) == bodies(7)
    assert result["elapsed"] < 5


def test_waiting_pull_of_a_deleted_queue_raises_queue_not_found(make_manager):
    qm = make_manager()
    qm.create("q", 10)
    errors = []

    def pull():
        try:
            qm.pull("q", 1, wait=10)
        except QueueNotFound as exc:
            errors.append(exc)

    puller = threading.Thread(target=pull)
    puller.start()
    time.sleep(0.2)
    qm.delete("q")
    puller.join(5)
    assert len(errors) == 1


def test_one_push_of_many_wakes_as_many_waiting_pullers(make_manager):
    qm = make_manager()
    qm.create("q", 10)
    got = []
    pullers = [threading.Thread(target=lambda: got.append(qm.pull("q", 1, wait=10))) for _ in range(3)]
    for t in pullers:
        t.start()
    time.sleep(0.2)
    qm.push("q", bodies(1, 2, 3))
    for t in pullers:
        t.join(5)
    assert sorted(b for batch in got for b in pulled_bodies(batch)) == bodies(1, 2, 3)


def test_release_waits_ends_long_polls_at_once_with_nothing(make_manager):
    qm = make_manager()
    qm.create("q", 10)
    got = []
    puller = threading.Thread(target=lambda: got.append(qm.pull("q", 1, wait=10)))
    puller.start()
    time.sleep(0.2)
    started = time.monotonic()
    qm.release_waits()
    puller.join(5)
    assert got == [[]] and time.monotonic() - started < 2


def test_closed_manager_refuses_changes_and_keeps_its_state(manager):
    manager.push("q", bodies(1))
    manager.close()
    with pytest.raises(StorageUnavailable):
        manager.push("q", bodies(2))
    with pytest.raises(StorageUnavailable):
        manager.pull("q")
    with pytest.raises(StorageUnavailable):
        manager.create("r", 1)
    assert manager.info("q")["size"] == 1


def test_snapshot_and_restore_keep_queues_messages_order_and_counters(memory_manager):
    memory_manager.create("empty", 3, schema="job")
    memory_manager.push("q", bodies(1, 2, 3))
    memory_manager.pull("q")
    state, _ = memory_manager.snapshot()
    restored = MemoryQueueManager.restore(state)
    assert restored.list() == memory_manager.list()
    assert pulled_bodies(restored.pull("q", 10)) == bodies(2, 3)
    new_ids, _, _ = restored.push("q", bodies(4))
    old_ids = [message.format_id(message.message_id(s)) for s in state["queues"][1]["messages"]]
    assert new_ids[0] > max(old_ids)


def test_snapshot_token_changes_only_when_state_changes(memory_manager):
    _, first = memory_manager.snapshot()
    assert memory_manager.snapshot()[1] == first
    memory_manager.push("q", bodies(1))
    _, second = memory_manager.snapshot()
    assert second != first
    memory_manager.pull("q")
    _, third = memory_manager.snapshot()
    assert third != second
    memory_manager.info("q")
    memory_manager.pull("q")  # the queue is empty: nothing changes
    assert memory_manager.snapshot()[1] == third


def test_threads_pushing_and_pulling_deliver_every_message_exactly_once(make_manager):
    qm = make_manager()
    qm.create("q", 100_000)
    producers, consumers, per_producer = 4, 4, 2000
    consumed = [[] for _ in range(consumers)]
    done = threading.Event()

    def produce(p):
        for i in range(0, per_producer, 10):
            qm.push("q", [b'{"p":%d,"i":%d}' % (p, j) for j in range(i, i + 10)])

    def consume(c):
        while True:
            got = qm.pull("q", 7, wait=0.05)
            consumed[c].extend(pulled_bodies(got))
            if not got and done.is_set():
                return

    threads = [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
    pushers = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads + pushers:
        t.start()
    for t in pushers:
        t.join(30)
    done.set()
    for t in threads:
        t.join(30)
    everything = [m for stream in consumed for m in stream]
    assert len(everything) == len(set(everything)) == producers * per_producer
    for stream in consumed:
        for p in range(producers):
            mine = [m for m in stream if m.startswith(b'{"p":%d,' % p)]
            assert mine == sorted(mine, key=lambda m: int(m.split(b'"i":')[1][:-1]))


def test_pulls_past_the_waiting_limit_answer_at_once(make_manager):
    qm = make_manager(max_waiting=1)
    qm.create("q", 10)
    waiter = threading.Thread(target=lambda: qm.pull("q", 1, wait=1.0))
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert qm.pull("q", 1, wait=5) == []
    assert time.monotonic() - started < 0.5
    waiter.join(5)
    started = time.monotonic()
    assert qm.pull("q", 1, wait=0.2) == []
    assert time.monotonic() - started >= 0.19


def test_a_push_wakes_every_waiting_puller_at_once(make_manager, monkeypatch):
    monkeypatch.setattr(redis_manager_module, "WAIT_SLICE_SECONDS", 10.0)  # see past the 1 s polling slice
    waiters = 130
    qm = make_manager(connections=waiters + 4)
    qm.create("q", 1000)
    got = []

    def pull():
        got.append((qm.pull("q", 1, wait=4), time.monotonic()))

    threads = [threading.Thread(target=pull) for _ in range(waiters)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    pushed_at = time.monotonic()
    qm.push("q", bodies(*range(waiters)))
    time.sleep(1.5)
    woken = sum(1 for messages, at in list(got) if messages and at - pushed_at < 1.5)
    qm.release_waits()
    for t in threads:
        t.join(10)
    assert woken == waiters  # Redis: 128 (WAKE_TOKENS_MAX); the rest wait out their wait


def test_every_operation_checks_the_queue_name_first(make_manager):
    qm = make_manager()
    for call in (
        lambda: qm.push("a b", bodies(1)),
        lambda: qm.pull("a b"),
        lambda: qm.ack("a b", ["r"]),
        lambda: qm.nack("a b", "r"),
        lambda: qm.extend("a b", "r", 5),
    ):
        with pytest.raises(InvalidQueueName):  # Redis: QueueNotFound
            call()


def test_a_push_checked_against_another_schema_than_the_queues_pushes_nothing(make_manager):
    qm = make_manager()
    qm.create("q", max_messages=10, schema="job")
    with pytest.raises(SchemaChanged):
        qm.push("q", bodies(1), schema=None)
    qm.push("q", bodies(2), schema="job")
    qm.push("q", bodies(3))  # a caller that checked no schema
    assert pulled_bodies(qm.pull("q", 10)) == bodies(2, 3)
