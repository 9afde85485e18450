"""Leases over HTTP: pull?lease, ack, nack, extend, dead-letter settings and their errors."""

import pytest


@pytest.fixture
def app(app_on_each_backend):
    """Every test here runs on both backends."""
    return app_on_each_backend


@pytest.fixture
def jobs(admin):
    admin.post("/queues", json={"name": "jobs.dead"})
    response = admin.post(
        "/queues", json={"name": "jobs", "max_deliveries": 2, "dead_letter_queue": "jobs.dead"}
    )
    assert response.status_code == 201
    return "/queues/jobs"


def test_queue_info_shows_lease_settings_and_in_flight(admin, jobs):
    info = admin.get(jobs).json
    assert (info["max_deliveries"], info["dead_letter_queue"], info["in_flight"]) == (2, "jobs.dead", 0)
    assert admin.get("/queues/jobs.dead").json["dead_letter_queue"] is None


def test_lease_pull_ack_round_trip(manager, jobs):
    manager.post(f"{jobs}/push", json={"messages": [{"n": 1}, {"n": 2}]})
    leased = manager.post(f"{jobs}/pull?lease=30&max=2").json["messages"]
    assert [(m["message"]["n"], m["deliveries"]) for m in leased] == [(1, 1), (2, 1)]
    assert manager.get(jobs).json["in_flight"] == 2
    receipts = [m["receipt"] for m in leased]
    assert manager.post(f"{jobs}/ack", json={"receipts": receipts}).json == {"acked": 2}
    assert manager.get(jobs).json["size"] == 0


def test_single_lease_pull_has_the_single_shape(manager, jobs):
    manager.post(f"{jobs}/push", json={"message": {"n": 1}})
    body = manager.post(f"{jobs}/pull?lease=30").json
    assert set(body) == {"id", "enqueued_at", "message", "receipt", "lease_expires_at", "deliveries"}
    assert manager.post(f"{jobs}/ack", json={"receipt": body["receipt"]}).json == {"acked": 1}


def test_nacked_message_is_delivered_again_then_dead_lettered(manager, jobs):
    # Expiry does the same as a nack, shown without sleeping by test_contract.py's clock.
    manager.post(f"{jobs}/push", json={"message": {"poison": True}})
    first = manager.post(f"{jobs}/pull?lease=60").json
    assert manager.post(f"{jobs}/nack", json={"receipt": first["receipt"]}).json["dead_lettered"] is False
    second = manager.post(f"{jobs}/pull?lease=60").json
    assert (second["id"], second["deliveries"]) == (first["id"], 2)
    response = manager.post(f"{jobs}/ack", json={"receipt": first["receipt"]})
    assert response.status_code == 409 and response.json["error"]["code"] == "receipt_invalid"
    nacked = manager.post(f"{jobs}/nack", json={"receipt": second["receipt"]}).json
    assert nacked == {"id": first["id"], "deliveries": 2, "dead_lettered": True}
    assert manager.post("/queues/jobs.dead/pull").json["message"] == {"poison": True}


def test_extend_returns_the_new_expiry(manager, jobs):
    manager.post(f"{jobs}/push", json={"message": {"n": 1}})
    leased = manager.post(f"{jobs}/pull?lease=5").json
    extended = manager.post(f"{jobs}/extend", json={"receipt": leased["receipt"], "lease": 600}).json
    assert extended["id"] == leased["id"] and extended["lease_expires_at"] > leased["lease_expires_at"]


def test_dead_letter_queue_in_use_cannot_be_deleted(admin, jobs):
    response = admin.delete("/queues/jobs.dead")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "queue_in_use" and "jobs" in response.json["error"]["message"]


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("ack", {}),
        ("ack", {"receipt": 5}),
        ("ack", {"receipts": []}),
        ("ack", {"receipts": "abc"}),
        ("ack", {"receipt": "a", "receipts": ["b"]}),
        ("nack", {}),
        ("nack", {"receipt": ""}),
        ("extend", {"receipt": "abc"}),
        ("extend", {"receipt": "abc", "lease": 0}),
        ("extend", {"receipt": "abc", "lease": 43_201}),
        ("extend", {"receipt": "abc", "lease": True}),
    ],
)
def test_malformed_lease_requests_are_400(manager, jobs, route, body):
    response = manager.post(f"{jobs}/{route}", json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("ack", {"receipt": "never-issued"}),
        ("ack", {"receipts": ["never-issued"]}),
        ("nack", {"receipt": "never-issued"}),
        ("extend", {"receipt": "never-issued", "lease": 10}),
    ],
)
def test_unknown_receipt_is_409_receipt_invalid(manager, jobs, route, body):
    response = manager.post(f"{jobs}/{route}", json=body)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "receipt_invalid"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "q", "max_deliveries": 3},
        {"name": "q", "dead_letter_queue": "jobs.dead"},
        {"name": "q", "max_deliveries": 0, "dead_letter_queue": "jobs.dead"},
        {"name": "q", "max_deliveries": 3, "dead_letter_queue": "missing"},
        {"name": "q", "max_deliveries": 3, "dead_letter_queue": "jobs"},
        {"name": "q", "max_deliveries": 3, "dead_letter_queue": 7},
    ],
)
def test_bad_dead_letter_settings_are_400(admin, jobs, body):
    response = admin.post("/queues", json=body)
    assert response.status_code == 400
    assert admin.get("/queues/q").status_code == 404
