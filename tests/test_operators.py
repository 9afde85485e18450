"""The operators' API over HTTP on both backends: browse, purge, dead-letter notes, redrive, nack with
a delay and a reason, idempotent push, and the freshness of the queues."""

import json
import threading
import time

import pytest

from app import shutdown
from tests.conftest import basic, eventually


@pytest.fixture
def app(app_on_each_backend):
    """Every test here runs on both backends."""
    return app_on_each_backend


@pytest.fixture
def jobs(admin):
    """jobs (2 deliveries, dead letters to jobs.dead) and jobs.dead."""
    assert admin.post("/queues", json={"name": "jobs.dead"}).status_code == 201
    body = {"name": "jobs", "max_messages": 5, "max_deliveries": 2, "dead_letter_queue": "jobs.dead"}
    assert admin.post("/queues", json=body).status_code == 201
    return "/queues/jobs"


def push(client, queue, *numbers, headers=None):
    response = client.post(
        f"/queues/{queue}/push", json={"messages": [{"n": n} for n in numbers]}, headers=headers
    )
    assert response.status_code == 201, response.json
    return response.json["ids"]


def dead_letter(client, queue, reason=None):
    """Lease the head of queue until it is out of deliveries, nacking each time (2 deliveries)."""
    for _ in range(2):
        leased = client.post(f"/queues/{queue}/pull?lease=30").json
        body = (
            {"receipt": leased["receipt"]}
            if reason is None
            else {"receipt": leased["receipt"], "reason": reason}
        )
        nacked = client.post(f"/queues/{queue}/nack", json=body).json
    assert nacked["dead_lettered"]
    return leased["id"]


# --- browse -------------------------------------------------------------------------------------


def test_browse_never_changes_what_the_next_pull_takes(admin, jobs):
    ids = push(admin, "jobs", 1, 2, 3)
    before = admin.get(jobs).json
    page = admin.get(f"{jobs}/messages?limit=2&offset=1").json
    assert [m["id"] for m in page["messages"]] == ids[1:]
    assert [m["message"] for m in page["messages"]] == [{"n": 2}, {"n": 3}]
    assert page["total"] == 3 and all(m["deliveries"] == 0 for m in page["messages"])
    after = admin.get(jobs).json
    assert (after["size"], after["pulled_total"]) == (before["size"], before["pulled_total"])
    assert admin.post(f"{jobs}/pull").json["id"] == ids[0]


def test_browse_of_leased_messages_shows_expiry_and_never_the_receipt(admin, jobs):
    push(admin, "jobs", 1, 2)
    leased = admin.post(f"{jobs}/pull?lease=30").json
    page = admin.get(f"{jobs}/messages?state=leased").json
    assert page["total"] == 1
    (shown,) = page["messages"]
    assert (shown["id"], shown["deliveries"], shown["lease_expires_at"]) == (
        leased["id"],
        1,
        leased["lease_expires_at"],
    )
    assert "receipt" not in shown and leased["receipt"] not in str(page)
    assert admin.get(f"{jobs}/messages").json["total"] == 1


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "offset=-1", "state=gone", "limit=x", "page=2", "limit=1&limit=2"]
)
def test_browse_with_a_bad_query_is_400(admin, jobs, query):
    response = admin.get(f"{jobs}/messages?{query}")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_request"


def test_browse_of_a_missing_queue_is_404(admin):
    assert admin.get("/queues/nope/messages").json["error"]["code"] == "queue_not_found"


# --- purge --------------------------------------------------------------------------------------


def test_purge_with_leases_out_drops_everything_and_their_acks_are_409(admin, jobs):
    push(admin, "jobs", 1, 2, 3)
    receipt = admin.post(f"{jobs}/pull?lease=30").json["receipt"]
    assert admin.post(f"{jobs}/purge").json == {"name": "jobs", "purged_messages": 3}
    info = admin.get(jobs).json
    assert (info["size"], info["in_flight"], info["pushed_total"], info["pulled_total"]) == (0, 0, 3, 1)
    response = admin.post(f"{jobs}/ack", json={"receipt": receipt})
    assert response.status_code == 409 and response.json["error"]["code"] == "receipt_invalid"
    assert admin.post(f"{jobs}/pull").status_code == 204
    push(admin, "jobs", 4)
    assert admin.post(f"{jobs}/pull").json["message"] == {"n": 4}


# --- dead letters and nack ----------------------------------------------------------------------


def test_dead_letter_carries_its_provenance_in_pulls_and_browse(admin, jobs):
    push(admin, "jobs", 1)
    message_id = dead_letter(admin, "jobs", reason="price feed down")
    (browsed,) = admin.get("/queues/jobs.dead/messages").json["messages"]
    note = browsed["dead_letter"]
    assert (browsed["id"], note["source_queue"], note["deliveries"], note["reason"]) == (
        message_id,
        "jobs",
        2,
        "price feed down",
    )
    assert note["dead_lettered_at"].endswith("Z") and browsed["last_nack_reason"] == "price feed down"
    pulled = admin.post("/queues/jobs.dead/pull").json
    assert pulled["dead_letter"] == note


def test_dead_letter_reason_is_null_when_the_nack_gave_none(admin, jobs):
    push(admin, "jobs", 1)
    dead_letter(admin, "jobs")
    assert admin.post("/queues/jobs.dead/pull").json["dead_letter"]["reason"] is None


def test_expired_last_lease_dead_letters_with_reason_lease_expired(admin, jobs):
    push(admin, "jobs", 1)
    admin.post(f"{jobs}/nack", json={"receipt": admin.post(f"{jobs}/pull?lease=30").json["receipt"]})
    admin.post(f"{jobs}/pull?lease=1")
    eventually(lambda: admin.get("/queues/jobs.dead").json["size"] == 1, timeout=10)
    assert admin.post("/queues/jobs.dead/pull").json["dead_letter"]["reason"] == "lease_expired"


def test_nack_reason_shows_in_browse_as_last_nack_reason(admin, jobs):
    push(admin, "jobs", 1)
    leased = admin.post(f"{jobs}/pull?lease=30").json
    admin.post(f"{jobs}/nack", json={"receipt": leased["receipt"], "reason": "timeout"})
    (browsed,) = admin.get(f"{jobs}/messages").json["messages"]
    assert (browsed["last_nack_reason"], browsed["deliveries"]) == ("timeout", 1)
    assert "dead_letter" not in browsed


def test_delayed_nack_keeps_the_message_in_flight_under_no_workers_receipt(admin, jobs):
    push(admin, "jobs", 1)
    leased = admin.post(f"{jobs}/pull?lease=30").json
    answer = admin.post(f"{jobs}/nack", json={"receipt": leased["receipt"], "delay": 60}).json
    assert answer == {"id": leased["id"], "deliveries": 1, "dead_lettered": False}
    assert admin.post(f"{jobs}/pull").status_code == 204
    assert admin.get(jobs).json["in_flight"] == 1
    (shown,) = admin.get(f"{jobs}/messages?state=leased").json["messages"]
    assert shown["id"] == leased["id"] and "receipt" not in shown
    response = admin.post(f"{jobs}/ack", json={"receipt": leased["receipt"]})
    assert response.status_code == 409


def test_delayed_nack_on_the_last_delivery_dead_letters_at_once(admin, jobs):
    push(admin, "jobs", 1)
    admin.post(f"{jobs}/nack", json={"receipt": admin.post(f"{jobs}/pull?lease=30").json["receipt"]})
    last = admin.post(f"{jobs}/pull?lease=30").json
    answer = admin.post(f"{jobs}/nack", json={"receipt": last["receipt"], "delay": 60}).json
    assert answer["dead_lettered"] and admin.get("/queues/jobs.dead").json["size"] == 1


@pytest.mark.parametrize(
    "body", [{"delay": -1}, {"delay": 43201}, {"delay": "5"}, {"reason": 5}, {"reason": "x" * 1001}]
)
def test_nack_with_a_bad_delay_or_reason_is_400(admin, jobs, body):
    push(admin, "jobs", 1)
    receipt = admin.post(f"{jobs}/pull?lease=30").json["receipt"]
    response = admin.post(f"{jobs}/nack", json={"receipt": receipt, **body})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_request"


# --- redrive ------------------------------------------------------------------------------------


def test_redrive_moves_dead_letters_to_the_tail_with_deliveries_starting_again(admin, jobs):
    push(admin, "jobs", 1)
    dead_id = dead_letter(admin, "jobs")
    push(admin, "jobs", 2)
    answer = admin.post("/queues/jobs.dead/redrive", json={}).json
    assert answer == {"moved": 1, "remaining": 0, "by_queue": {"jobs": 1}}
    first, second = admin.post(f"{jobs}/pull?lease=30&max=2").json["messages"]
    assert (first["message"], second["message"]) == ({"n": 2}, {"n": 1})
    assert (second["id"], second["deliveries"]) == (dead_id, 1)
    assert "dead_letter" not in second


def test_redrive_stops_when_the_destination_is_full(admin, jobs):
    for n in range(3):
        push(admin, "jobs", n)
        dead_letter(admin, "jobs")
    push(admin, "jobs", 10, 11, 12, 13)  # jobs holds 5: room for one more
    answer = admin.post("/queues/jobs.dead/redrive", json={}).json
    assert answer == {"moved": 1, "remaining": 2, "by_queue": {"jobs": 1}}
    assert [m["message"]["n"] for m in admin.get("/queues/jobs.dead/messages").json["messages"]] == [1, 2]


def test_redrive_with_max_and_to(admin, jobs):
    admin.post("/queues", json={"name": "retry"})
    for n in range(3):
        push(admin, "jobs", n)
        dead_letter(admin, "jobs")
    answer = admin.post("/queues/jobs.dead/redrive", json={"max": 2, "to": "retry"}).json
    assert answer == {"moved": 2, "remaining": 1, "by_queue": {"retry": 2}}
    assert [m["message"]["n"] for m in admin.get("/queues/retry/messages").json["messages"]] == [0, 1]


def test_redrive_leaves_messages_without_a_source_or_failing_its_schema(admin, jobs):
    admin.post("/queues", json={"name": "results", "schema": "result"})
    push(admin, "jobs.dead", 7)  # pushed straight in: no source queue
    push(admin, "jobs", 1)
    dead_letter(admin, "jobs")
    assert admin.post("/queues/jobs.dead/redrive", json={}).json == {
        "moved": 1,
        "remaining": 1,
        "by_queue": {"jobs": 1},
    }
    answer = admin.post("/queues/jobs.dead/redrive", json={"to": "results"}).json
    assert answer == {"moved": 0, "remaining": 1, "by_queue": {}}


def test_redrive_to_a_missing_queue_is_404(admin, jobs):
    response = admin.post("/queues/jobs.dead/redrive", json={"to": "nope"})
    assert response.status_code == 404 and response.json["error"]["code"] == "queue_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"max": 0},
        {"max": True},
        {"to": 5},
        {"to": None},
        {"to": "bad name"},
        {"to": "jobs.dead"},
        {"limit": 1},
    ],
)
def test_redrive_with_a_bad_body_is_400(admin, jobs, body):
    assert admin.post("/queues/jobs.dead/redrive", json=body).status_code == 400


# --- idempotent push ----------------------------------------------------------------------------


def test_repeated_push_with_one_key_answers_the_first_reply_and_adds_nothing(admin, jobs):
    key = {"Idempotency-Key": "order-17"}
    first = admin.post(f"{jobs}/push", json={"message": {"a": 1, "b": 2}}, headers=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    push(admin, "jobs", 9)
    again = admin.post(
        f"{jobs}/push",
        data='{"message": {"b": 2, "a": 1}}',
        headers={**key, "Content-Type": "application/json"},
    )
    assert again.status_code == 201 and again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert admin.get(jobs).json["size"] == 2


def test_same_key_with_another_body_is_422(admin, jobs):
    key = {"Idempotency-Key": "k"}
    admin.post(f"{jobs}/push", json={"message": {"a": 1}}, headers=key)
    response = admin.post(f"{jobs}/push", json={"message": {"a": 2}}, headers=key)
    assert response.status_code == 422 and response.json["error"]["code"] == "idempotency_key_reused"
    assert admin.get(jobs).json["size"] == 1


def test_a_failed_push_is_not_remembered(admin, jobs):
    push(admin, "jobs", 1, 2, 3, 4, 5)
    key = {"Idempotency-Key": "retry-me"}
    assert admin.post(f"{jobs}/push", json={"message": {"n": 6}}, headers=key).status_code == 409
    admin.post(f"{jobs}/pull")
    retried = admin.post(f"{jobs}/push", json={"message": {"n": 6}}, headers=key)
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers


def test_keys_belong_to_one_queue(admin, jobs):
    key = {"Idempotency-Key": "shared"}
    admin.post(f"{jobs}/push", json={"message": {"a": 1}}, headers=key)
    other = admin.post("/queues/jobs.dead/push", json={"message": {"a": 1}}, headers=key)
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "é"])
def test_malformed_idempotency_key_is_400(admin, jobs, key):
    response = admin.post(f"{jobs}/push", json={"message": {}}, headers={"Idempotency-Key": key})
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_request"


def test_sixteen_concurrent_pushes_with_one_key_add_one_message(app, jobs):
    client = app.test_client()
    answers, barrier = [], threading.Barrier(16)

    def push_once():
        barrier.wait()
        response = client.post(
            f"{jobs}/push",
            json={"message": {"once": True}},
            headers={**basic("admin"), "Idempotency-Key": "one"},
        )
        answers.append((response.status_code, response.json["id"]))

    threads = [threading.Thread(target=push_once) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status for status, _ in answers} == {201} and len({i for _, i in answers}) == 1
    assert client.get(jobs, headers=basic("admin")).json["size"] == 1


# --- freshness ----------------------------------------------------------------------------------


def test_queue_info_shows_the_oldest_message_and_waiting_pulls(admin, jobs):
    assert admin.get(jobs).json["oldest_enqueued_at"] is None
    push(admin, "jobs", 1)
    time.sleep(0.01)
    push(admin, "jobs", 2)
    head = admin.get(f"{jobs}/messages?limit=1").json["messages"][0]
    assert admin.get(jobs).json["oldest_enqueued_at"] == head["enqueued_at"]
    waiter = threading.Thread(target=lambda: admin.post("/queues/jobs.dead/pull?wait=3"))
    waiter.start()
    try:
        eventually(lambda: admin.get("/queues/jobs.dead").json["waiting_pulls"] == 1, timeout=3)
        metrics = admin.get("/metrics").get_data(as_text=True)
        assert 'queues_waiting_pulls{queue="jobs.dead"} 1.0' in metrics
        assert 'queues_oldest_message_age_seconds{queue="jobs"}' in metrics
    finally:
        push(admin, "jobs.dead", 1)
        waiter.join()
    assert admin.get("/queues/jobs.dead").json["waiting_pulls"] == 0


# --- request log and metrics --------------------------------------------------------------------


def test_operators_routes_are_logged_and_timed_like_the_others(make_app, tmp_path):
    app = make_app()
    client, admin = app.test_client(), basic("admin")
    client.post("/queues", json={"name": "jobs"}, headers=admin)
    client.post("/queues/jobs/push", json={"message": {}}, headers={**admin, "Idempotency-Key": "logged-key"})
    client.get("/queues/jobs/messages", headers=admin)
    client.post("/queues/jobs/redrive", json={}, headers=admin)
    client.post("/queues/jobs/purge", headers=admin)
    metrics = client.get("/metrics", headers=admin).get_data(as_text=True)
    for route in ("/queues/<name>/messages", "/queues/<name>/redrive", "/queues/<name>/purge"):
        assert f'route="{route}",status="200"' in metrics
    shutdown(app)
    entries = [json.loads(line) for line in (tmp_path / "logs" / "requests.log").read_text().splitlines()]
    pushed = next(e for e in entries if e["direction"] == "request" and e["path"] == "/queues/jobs/push")
    assert pushed["headers"]["Idempotency-Key"] == "logged-key"
    paths = {e["path"] for e in entries}
    assert {"/queues/jobs/messages", "/queues/jobs/redrive", "/queues/jobs/purge"} <= paths


def test_idempotency_key_is_checked_before_the_body(admin, jobs):
    response = admin.post(
        f"{jobs}/push",
        data=b"not json",
        headers={"Idempotency-Key": "bad key", "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "Idempotency-Key" in response.json["error"]["message"]
