"""The Python client against a real server: every method, errors with their codes, retries."""

import threading
import time

import pytest
import yaml

from client import (
    Forbidden,
    IdempotencyKeyReused,
    InvalidMessage,
    QueueClient,
    QueueError,
    QueueExists,
    QueueFull,
    QueueInUse,
    QueueNotFound,
    ReceiptInvalid,
    Retry,
    Unauthorized,
)
from tests.conftest import PASSWORDS, eventually
from tests.live_server import LiveServer, skip_without_route

pytestmark = pytest.mark.slow


@pytest.fixture
def admin(live, request):
    with QueueClient(live.base_url, "admin", PASSWORDS["admin"]) as client:
        yield client
        for queue in sorted(client.list_queues(), key=lambda q: q["dead_letter_queue"] is None):
            client.delete_queue(queue["name"])


def test_queue_lifecycle(admin):
    created = admin.create_queue("jobs", max_messages=10, schema="job")
    assert (created["name"], created["max_messages"], created["schema"]) == ("jobs", 10, "job")
    assert [q["name"] for q in admin.list_queues()] == ["jobs"]
    assert admin.get_queue("jobs")["size"] == 0
    assert admin.delete_queue("jobs") == 0
    assert admin.health()["status"] == "ok"
    assert yaml.safe_load(admin.openapi())["openapi"].startswith("3.")


def test_push_and_pull_in_order(admin):
    admin.create_queue("q")
    first = admin.push("q", {"n": 1})
    rest = admin.push_batch("q", [{"n": 2}, {"n": 3}])
    pulled = admin.pull("q", max=10)
    assert [m["id"] for m in pulled] == [first, *rest]
    assert [m["message"]["n"] for m in pulled] == [1, 2, 3]


def test_pull_shapes(admin):
    admin.create_queue("q")
    admin.push_batch("q", [{"n": 1}, {"n": 2}, {"n": 3}])
    assert admin.pull("q")["message"] == {"n": 1}
    assert [m["message"] for m in admin.pull("q", max=5)] == [{"n": 2}, {"n": 3}]
    assert admin.pull("q") is None
    assert admin.pull("q", max=5) == []


def test_lease_ack_nack_extend(admin):
    admin.create_queue("dead")
    admin.create_queue("work", max_deliveries=2, dead_letter_queue="dead")
    admin.push("work", {"job": 1})
    leased = admin.pull("work", lease=30)
    assert leased["deliveries"] == 1
    assert admin.extend("work", leased["receipt"], 60)["id"] == leased["id"]
    assert admin.nack("work", leased["receipt"])["dead_lettered"] is False
    again = admin.pull("work", lease=30, max=1)[0]
    assert again["deliveries"] == 2
    assert admin.ack("work", again["receipt"]) == 1
    with pytest.raises(ReceiptInvalid) as error:
        admin.ack("work", [again["receipt"]])
    assert (error.value.status, error.value.code) == (409, "receipt_invalid")
    with pytest.raises(QueueInUse):
        admin.delete_queue("dead")


def test_errors_carry_the_contracts_codes(live, admin):
    admin.create_queue("jobs", schema="job", max_messages=1)
    with pytest.raises(QueueNotFound) as missing:
        admin.get_queue("missing")
    assert (missing.value.status, missing.value.code) == (404, "queue_not_found")
    with pytest.raises(QueueExists):
        admin.create_queue("jobs")
    with pytest.raises(InvalidMessage) as invalid:
        admin.push("jobs", {"id": 1})
    assert invalid.value.details[0]["index"] == 0
    with pytest.raises(Unauthorized):
        QueueClient(live.base_url, "admin", "wrong").list_queues()
    with pytest.raises(Forbidden):
        QueueClient(live.base_url, "manager", PASSWORDS["manager"]).create_queue("x")
    with pytest.raises(QueueError) as unreachable:
        QueueClient("http://127.0.0.1:9", "admin", "x", timeout=2).list_queues()
    assert unreachable.value.code == "unreachable"


def test_retry_on_queue_full_succeeds_once_there_is_room(live, admin):
    admin.create_queue("small", max_messages=1)
    admin.push("small", {"n": 1})
    patient = QueueClient(live.base_url, "admin", PASSWORDS["admin"], retry=Retry(attempts=20, backoff=0.05))
    threading.Timer(0.5, lambda: admin.pull("small")).start()
    started = time.monotonic()
    patient.push("small", {"n": 2})
    assert time.monotonic() - started >= 0.4
    assert admin.pull("small")["message"] == {"n": 2}


def test_retry_gives_up_within_its_bounds(live, admin):
    admin.create_queue("small", max_messages=1)
    admin.push("small", {"n": 1})
    patient = QueueClient(live.base_url, "admin", PASSWORDS["admin"], retry=Retry(attempts=3, backoff=0.01))
    with pytest.raises(QueueFull):
        patient.push("small", {"n": 2})
    with pytest.raises(QueueFull):
        QueueClient(live.base_url, "admin", PASSWORDS["admin"]).push("small", {"n": 3})


def test_ack_of_an_expired_lease_is_receipt_invalid(admin):
    admin.create_queue("q")
    admin.push("q", {"n": 1})
    leased = admin.pull("q", lease=1)
    time.sleep(1.3)
    with pytest.raises(ReceiptInvalid):
        admin.ack("q", leased["receipt"])
    assert admin.pull("q", lease=5)["deliveries"] == 2


@pytest.mark.parametrize("crash", [False, True], ids=["SIGTERM", "kill -9"])
def test_leases_survive_a_restart_with_their_delivery_counts(tmp_path, crash):
    server = LiveServer(tmp_path, persistence={"journal": "on", "fsync": "always"})
    server.start()
    try:
        client = QueueClient(server.base_url, "admin", PASSWORDS["admin"])
        client.create_queue("q")
        client.push_batch("q", [{"n": 1}, {"n": 2}])
        first = client.pull("q", lease=600)
        assert client.get_queue("q")["in_flight"] == 1
        if crash:
            server.kill9()
        else:
            server.stop()
        server.start()
        client = QueueClient(server.base_url, "admin", PASSWORDS["admin"])
        assert client.get_queue("q")["in_flight"] == 0
        again = client.pull("q", lease=600, max=2)
        assert [(m["id"], m["deliveries"]) for m in again] == [(first["id"], 2), (again[1]["id"], 1)]
        with pytest.raises(ReceiptInvalid):
            client.ack("q", first["receipt"])  # the lease ended with the restart
    finally:
        server.stop()


def logged_push_keys(live, queue):
    """The Idempotency-Key of each push request to queue in the server's request log, in order."""
    return [
        headers.get("Idempotency-Key") for headers in live.logged_request_headers(f"/queues/{queue}/push")
    ]


def test_a_push_retried_on_queue_full_sends_one_key_on_every_attempt(live, admin):
    admin.create_queue("keyed", max_messages=1)
    admin.push("keyed", {"n": 1}, key="the-first-push")
    patient = QueueClient(live.base_url, "admin", PASSWORDS["admin"], retry=Retry(attempts=50, backoff=0.05))
    pushing = threading.Thread(target=patient.push, args=("keyed", {"n": 2}))
    pushing.start()

    def patient_keys():  # with several workers, the log's lines need not be in the order sent
        return [key for key in logged_push_keys(live, "keyed") if key != "the-first-push"]

    eventually(lambda: len(patient_keys()) >= 2)  # refused twice at least
    admin.pull("keyed")
    pushing.join(30)
    assert admin.pull("keyed")["message"] == {"n": 2}
    keys = patient_keys()
    assert len(keys) >= 2 and len(set(keys)) == 1


def test_a_push_repeated_with_its_key_is_answered_again_and_adds_nothing(live, admin):
    skip_without_route(live)
    admin.create_queue("once")
    first = admin.push_reply("once", {"message": {"n": 1}}, key="k-1")
    assert admin.push_reply("once", {"message": {"n": 1}}, key="k-1") == first
    assert admin.get_queue("once")["size"] == 1
    with pytest.raises(IdempotencyKeyReused):
        admin.push("once", {"n": 2}, key="k-1")


def test_browse_shows_messages_without_taking_them(live, admin):
    skip_without_route(live)
    admin.create_queue("shelf")
    ids = admin.push_batch("shelf", [{"n": n} for n in range(5)])
    page = admin.browse("shelf", limit=2, offset=1)
    assert [m["id"] for m in page["messages"]] == ids[1:3] and page["total"] == 5
    leased = admin.pull("shelf", lease=30)
    in_flight = admin.browse("shelf", leased=True)
    assert [m["id"] for m in in_flight["messages"]] == [leased["id"]]
    assert "receipt" not in in_flight["messages"][0]
    assert admin.pull("shelf")["id"] == ids[1]


def test_purge_takes_leased_messages_too(live, admin):
    skip_without_route(live)
    admin.create_queue("bin")
    admin.push_batch("bin", [{"n": 1}, {"n": 2}])
    leased = admin.pull("bin", lease=30)
    assert admin.purge("bin") == 2
    with pytest.raises(ReceiptInvalid):
        admin.ack("bin", leased["receipt"])
    assert admin.get_queue("bin")["size"] == 0


def test_a_nack_reason_and_delay_then_redrive_back_to_the_source(live, admin):
    skip_without_route(live)
    admin.create_queue("work.dead")
    admin.create_queue("work", max_deliveries=1, dead_letter_queue="work.dead")
    admin.push("work", {"job": 1})
    leased = admin.pull("work", lease=30)
    admin.nack("work", leased["receipt"], delay=5, reason="price feed down")
    (dead,) = admin.browse("work.dead")["messages"]
    assert (dead["dead_letter"]["source_queue"], dead["dead_letter"]["reason"]) == ("work", "price feed down")
    assert admin.redrive("work.dead", max=10) == {"moved": 1, "remaining": 0, "by_queue": {"work": 1}}
    assert admin.pull("work", lease=30)["deliveries"] == 1
