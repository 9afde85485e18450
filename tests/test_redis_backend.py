"""The Redis backend where it can differ from the memory one: batches past Lua's stack, Redis
refusing writes, the server's locale, ids after Redis lost data, leases across a service restart."""

import json
import shutil
import subprocess
import time

import pytest

from app import shutdown
from queues.errors import StorageUnavailable
from queues.redis_manager import RedisQueueManager
from tests.conftest import backend_sections, basic
from tests.live_server import free_port
from tests.redis_server import RedisServer


def bodies(*numbers):
    return [b'{"n":%d}' % n for n in numbers]


def ns(rendered):
    return [json.loads(r)["message"]["n"] for r in rendered]


@pytest.fixture
def own_redis(tmp_path):
    """Start redis-servers of the test's own (they may be reconfigured or stopped); all stopped after."""
    started = []

    def start(env=None, args=()):
        started.append(RedisServer(tmp_path / f"redis{len(started)}", env=env, args=args))
        started[-1].directory.mkdir()
        return started[-1].start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def manager_on(own_redis):
    """A RedisQueueManager on a given server, closed after the test."""
    made = []

    def make(server, clock=None):
        made.append(RedisQueueManager(server.url, 4, clock=clock))
        return made[-1]

    yield make
    for manager in made:
        manager.close()


@pytest.fixture(params=["memory", "redis"])
def big_batch_app(request, make_app):
    redis_server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    sections = backend_sections(request.param, redis_server, workers=1)
    sections["queues"] = {"max_batch": 10_000, "max_messages": 20_000}
    return make_app(**sections)


def test_push_of_max_batch_messages_is_accepted(big_batch_app):
    client = big_batch_app.test_client()
    assert client.post("/queues", json={"name": "q"}, headers=basic("admin")).status_code == 201
    response = client.post(
        "/queues/q/push", json={"messages": [{"n": n} for n in range(10_000)]}, headers=basic("manager")
    )
    assert response.status_code == 201, response.json  # Redis: 500 "too many results to unpack"


def test_lease_pull_with_max_batch_on_an_empty_queue_answers_204(big_batch_app):
    client = big_batch_app.test_client()
    assert client.post("/queues", json={"name": "q"}, headers=basic("admin")).status_code == 201
    response = client.post("/queues/q/pull?max=10000&lease=30", headers=basic("manager"))
    assert response.status_code == 204, response.json  # Redis: 500, even with nothing to pull


def test_ack_of_max_batch_receipts_answers_409_not_500(big_batch_app):
    client = big_batch_app.test_client()
    assert client.post("/queues", json={"name": "q"}, headers=basic("admin")).status_code == 201
    receipts = [f"r{i}" for i in range(10_000)]
    response = client.post("/queues/q/ack", json={"receipts": receipts}, headers=basic("manager"))
    assert response.status_code == 409, response.json  # Redis: 500


@pytest.fixture
def client_each(app_on_each_backend):
    return app_on_each_backend.test_client()


def test_ack_with_a_repeated_and_an_unknown_receipt_names_the_unknown_one(client_each):
    client_each.post("/queues", json={"name": "q"}, headers=basic("admin"))
    client_each.post("/queues/q/push", json={"message": {"n": 1}}, headers=basic("manager"))
    receipt = client_each.post("/queues/q/pull?lease=30", headers=basic("manager")).json["receipt"]
    response = client_each.post(
        "/queues/q/ack", json={"receipts": [receipt, receipt, "bogus"]}, headers=basic("manager")
    )
    assert response.status_code == 409
    # As on the memory backend: a repeated receipt refuses them all, and details name the unknown one.
    assert [d["index"] for d in response.json["error"].get("details", [])] == [2]


def test_redis_out_of_memory_is_storage_unavailable(own_redis, manager_on):
    server = own_redis()
    manager = manager_on(server)
    manager.create("q", 10)
    server.client().config_set("maxmemory", "1")  # noeviction: every write is refused with OOM
    with pytest.raises(StorageUnavailable):
        manager.push("q", bodies(1))  # redis-py raises OutOfMemoryError, its code stripped


def test_read_only_replica_is_storage_unavailable(own_redis, manager_on):
    server = own_redis()
    manager = manager_on(server)
    manager.create("q", 10)
    server.client().replicaof("127.0.0.1", free_port())  # a master that is not there: READONLY
    with pytest.raises(StorageUnavailable):
        manager.push("q", bodies(1))  # redis-py raises ReadOnlyError


@pytest.fixture
def en_us_locale(tmp_path):
    if shutil.which("localedef") is None:
        pytest.skip("no localedef")
    path = tmp_path / "locales"
    path.mkdir()
    subprocess.run(
        ["localedef", "-i", "en_US", "-f", "UTF-8", str(path / "en_US.UTF-8")],
        check=False,
        capture_output=True,
    )
    if not (path / "en_US.UTF-8" / "LC_COLLATE").exists():
        pytest.skip("cannot build the en_US.UTF-8 locale")
    return {"LOCPATH": str(path), "LC_ALL": "en_US.UTF-8"}


def test_expired_leases_go_back_in_id_order_whatever_the_redis_locale(
    own_redis, manager_on, en_us_locale, clock
):
    server = own_redis(env=en_us_locale)  # as under systemd or a shell with LANG=en_US.UTF-8
    manager = manager_on(server, clock)
    manager.create("q", 1000)
    manager.push("q", bodies(*range(1, 201)))
    assert len(manager.pull("q", 200, lease=1)) == 200
    clock.now += 1.2
    # Lua's "<" on strings is strcoll(), which under this locale is not byte order: ids compare as numbers.
    assert ns(manager.pull("q", 200)) == list(range(1, 201))


def test_ids_are_not_reissued_after_redis_lost_its_data(own_redis, manager_on):
    server = own_redis()  # no persistence: as after a crash with RDB or appendfsync everysec
    manager = manager_on(server)
    manager.create("q", 10)
    (first,), _, _ = manager.push("q", bodies(1))
    assert manager.pull("q")  # handed out to a consumer, which keeps its id
    server.stop()
    server.start()
    manager.create("q", 10)
    (second,), _, _ = manager.push("q", bodies(2))
    # Like the memory backend, ids start no lower than the time in microseconds.
    assert second != first, f"id {second} handed out twice"


def test_a_service_restart_keeps_redis_leases_until_they_end(make_app, redis_server):
    # Other instances' workers may hold leases on the same Redis: a restart of one instance must not
    # take their messages away. A lease ends as always, by ack, nack or expiry (docs.md).
    sections = backend_sections("redis", redis_server, workers=1)
    first = make_app(**sections).test_client()
    first.post("/queues", json={"name": "q"}, headers=basic("admin"))
    first.post("/queues/q/push", json={"messages": [{"n": 1}, {"n": 2}]}, headers=basic("manager"))
    held = first.post("/queues/q/pull?lease=600", headers=basic("manager")).json
    expiring = first.post("/queues/q/pull?lease=1", headers=basic("manager")).json
    shutdown(first.application)
    again = make_app(**sections).test_client()
    assert again.post("/queues/q/pull", headers=basic("manager")).status_code == 204
    assert again.post("/queues/q/ack", json={"receipt": held["receipt"]}, headers=basic("manager")).json == {
        "acked": 1
    }
    time.sleep(1.1)
    back = again.post("/queues/q/pull?lease=60", headers=basic("manager")).json
    assert (back["id"], back["deliveries"]) == (expiring["id"], 2)


def test_a_workers_copy_of_a_queue_is_checked_when_another_worker_made_it_again(make_app, redis_server):
    app = make_app(**backend_sections("redis", redis_server, workers=1))
    client = app.test_client()
    assert client.post("/queues", json={"name": "q"}, headers=basic("admin")).status_code == 201
    first = client.post("/queues/q/push", json={"message": {"n": 1}}, headers=basic("manager"))
    assert first.status_code == 201  # the worker now has its copy: no schema
    other = RedisQueueManager(redis_server.url, 2)  # another worker, within the first's METADATA_SECONDS
    try:
        other.delete("q")
        other.create("q", 10, schema="job")
        pushed = client.post("/queues/q/push", json={"message": {"n": 2}}, headers=basic("manager"))
        assert pushed.status_code == 422 and pushed.json["error"]["code"] == "invalid_message"
        other.delete("q")
        pulled = client.post("/queues/q/pull", headers=basic("manager"))
        assert pulled.status_code == 404 and pulled.json["error"]["code"] == "queue_not_found"
    finally:
        other.close()
