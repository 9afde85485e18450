"""Pushing and pulling over HTTP, and every error a push or pull can meet."""

import threading
import time

import pytest


@pytest.fixture
def app(app_on_each_backend):
    """Every test here runs on both backends."""
    return app_on_each_backend


JOB = {
    "id": "job-1",
    "timestamp": "2026-11-28T10:00:00Z",
    "status": "pending",
    "date_range": {"start": "2026-01-01", "end": "2026-06-30"},
    "assets": ["AAPL", "MSFT"],
    "parameters": {"window": 20},
}


@pytest.fixture
def jobs(admin):
    assert admin.post("/queues", json={"name": "jobs", "max_messages": 5}).status_code == 201
    return "/queues/jobs"


def test_push_one_returns_201_with_id_and_size(manager, jobs):
    response = manager.post(f"{jobs}/push", json={"message": {"n": 1}})
    assert response.status_code == 201
    assert set(response.json) == {"id", "queue", "size"}
    assert (response.json["queue"], response.json["size"]) == ("jobs", 1)


def test_pull_returns_the_oldest_message_with_its_id(manager, jobs):
    pushed = manager.post(f"{jobs}/push", json={"message": {"n": 1}}).json
    manager.post(f"{jobs}/push", json={"message": {"n": 2}})
    response = manager.post(f"{jobs}/pull")
    assert response.status_code == 200
    assert set(response.json) == {"id", "enqueued_at", "message"}
    assert response.json["id"] == pushed["id"]
    assert response.json["message"] == {"n": 1}


def test_messages_come_out_in_push_order_across_single_and_batch_pushes(manager, jobs):
    manager.post(f"{jobs}/push", json={"message": {"n": 0}})
    ids = manager.post(f"{jobs}/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]}).json["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    pulled = manager.post(f"{jobs}/pull?max=10").json["messages"]
    assert [m["message"]["n"] for m in pulled] == [0, 1, 2, 3]
    assert [m["id"] for m in pulled[1:]] == ids


def test_message_content_comes_back_exactly(manager, jobs):
    message = {"text": "naïve – ☃", "big": 123456789012345678901234567890, "f": 0.1, "nested": [None, True]}
    manager.post(f"{jobs}/push", json={"message": message})
    assert manager.post(f"{jobs}/pull").json["message"] == message


def test_pull_with_max_answers_a_list_even_for_one(manager, jobs):
    manager.post(f"{jobs}/push", json={"message": {"n": 1}})
    response = manager.post(f"{jobs}/pull?max=1")
    assert [m["message"] for m in response.json["messages"]] == [{"n": 1}]


def test_pull_of_an_empty_queue_is_204_without_body(manager, jobs):
    response = manager.post(f"{jobs}/pull")
    assert response.status_code == 204
    assert response.data == b""
    assert manager.post(f"{jobs}/pull?max=3&wait=0").status_code == 204


def test_long_poll_is_woken_by_a_push(app, manager, jobs, auth_header):
    other = app.test_client()

    def push_later():
        time.sleep(0.3)
        other.post(f"{jobs}/push", json={"message": {"late": True}}, headers=auth_header("manager"))

    pusher = threading.Thread(target=push_later)
    started = time.monotonic()
    pusher.start()
    response = manager.post(f"{jobs}/pull?wait=10")
    pusher.join()
    assert response.status_code == 200
    assert response.json["message"] == {"late": True}
    assert time.monotonic() - started < 5


def test_long_poll_gives_up_after_wait_seconds(manager, jobs):
    started = time.monotonic()
    assert manager.post(f"{jobs}/pull?wait=0.3").status_code == 204
    assert time.monotonic() - started >= 0.29


def test_counters_follow_pushes_and_pulls(manager, jobs):
    manager.post(f"{jobs}/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]})
    manager.post(f"{jobs}/pull?max=2")
    info = manager.get(jobs).json
    assert (info["size"], info["pushed_total"], info["pulled_total"]) == (1, 3, 2)


def test_push_past_max_messages_is_409_queue_full(manager, jobs):
    manager.post(f"{jobs}/push", json={"messages": [{"n": i} for i in range(5)]})
    response = manager.post(f"{jobs}/push", json={"message": {"n": 5}})
    assert response.status_code == 409
    assert response.json["error"]["code"] == "queue_full"
    assert manager.get(jobs).json["size"] == 5


def test_batch_that_does_not_fit_adds_nothing(manager, jobs):
    manager.post(f"{jobs}/push", json={"messages": [{"n": i} for i in range(3)]})
    assert manager.post(f"{jobs}/push", json={"messages": [{"x": 1}, {"x": 2}, {"x": 3}]}).status_code == 409
    pulled = manager.post(f"{jobs}/pull?max=10").json["messages"]
    assert [m["message"] for m in pulled] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_batch_larger_than_max_batch_is_400(make_app, auth_header):
    client = make_app(queues={"max_batch": 3}).test_client()
    client.post("/queues", json={"name": "q"}, headers=auth_header("admin"))
    response = client.post("/queues/q/push", json={"messages": [{}] * 4}, headers=auth_header("admin"))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": '{"message": NaN}', "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": b'{"message": "\xff"}', "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": "", "content_type": "application/json"}, 400, "invalid_json"),
        ({"json": [1, 2]}, 400, "invalid_request"),
        ({"json": {}}, 400, "invalid_request"),
        ({"json": {"messages": []}}, 400, "invalid_request"),
        ({"json": {"messages": {"a": 1}}}, 400, "invalid_request"),
        ({"json": {"message": {}, "messages": [{}]}}, 400, "invalid_request"),
        ({"json": {"message": {}, "extra": 1}}, 400, "invalid_request"),
        ({"json": {"message": [1]}}, 422, "invalid_message"),
        ({"json": {"message": "text"}}, 422, "invalid_message"),
        ({"json": {"messages": [{}, 3]}}, 422, "invalid_message"),
        ({"data": '{"message": {}}', "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": '{"message": {}}'}, 415, "unsupported_media_type"),
    ],
)
def test_bad_push_is_refused_with_its_error_and_adds_nothing(manager, jobs, kwargs, status, code):
    response = manager.post(f"{jobs}/push", **kwargs)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert manager.get(jobs).json["size"] == 0


def test_non_object_in_a_batch_names_its_index(manager, jobs):
    response = manager.post(f"{jobs}/push", json={"messages": [{}, {}, 3]})
    assert response.json["error"]["details"] == [
        {"index": 2, "path": "", "problem": "a message must be a JSON object"}
    ]


def test_body_over_max_request_bytes_is_413(make_app, auth_header):
    client = make_app(queues={"max_request_bytes": 2048}).test_client()
    client.post("/queues", json={"name": "q"}, headers=auth_header("admin"))
    response = client.post(
        "/queues/q/push", json={"message": {"s": "x" * 4096}}, headers=auth_header("admin")
    )
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "query",
    [
        "max=0",
        "max=101",
        "max=abc",
        "max=1.5",
        "max=",
        "wait=-1",
        "wait=21",
        "wait=x",
        "wait=nan",
        "lease=0",
        "lease=43201",
        "lease=1.5",
        "colour=red",
        "max=1&max=2",
    ],
)
def test_bad_pull_query_is_400_invalid_request(manager, jobs, query):
    manager.post(f"{jobs}/push", json={"message": {"n": 1}})
    response = manager.post(f"{jobs}/pull?{query}")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_request"
    assert manager.get(jobs).json["size"] == 1


def test_push_and_pull_on_a_missing_queue_are_404(manager):
    assert manager.post("/queues/none/push", json={"message": {}}).json["error"]["code"] == "queue_not_found"
    assert manager.post("/queues/none/pull").json["error"]["code"] == "queue_not_found"


@pytest.fixture
def job_queue(admin):
    admin.post("/queues", json={"name": "jobs", "schema": "job"})
    return "/queues/jobs"


def test_valid_job_is_accepted_on_a_job_queue(manager, job_queue):
    assert manager.post(f"{job_queue}/push", json={"message": JOB}).status_code == 201


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"status": "sleeping"}, "status"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2026-11-28T10:00:00"}, "timestamp"),
        ({"date_range": {"start": "2026-13-01", "end": "2026-12-31"}}, "date_range/start"),
        ({"date_range": {"start": "2026-02-01", "end": "2026-01-01"}}, "date_range"),
        ({"date_range": {"start": "2026-02-01"}}, "date_range/end"),
        ({"assets": []}, "assets"),
        ({"assets": ["AAPL", 5]}, "assets/1"),
        ({"id": None}, "id"),
        ({"parameters": [1]}, "parameters"),
    ],
)
def test_invalid_job_is_422_naming_index_and_field(manager, job_queue, change, path):
    response = manager.post(f"{job_queue}/push", json={"messages": [JOB, {**JOB, **change}]})
    assert response.status_code == 422
    details = response.json["error"]["details"]
    assert {(d["index"], d["path"]) for d in details} == {(1, path)}
    assert manager.get(job_queue).json["size"] == 0


def test_missing_required_field_names_the_field(manager, job_queue):
    job = {k: v for k, v in JOB.items() if k != "assets"}
    details = manager.post(f"{job_queue}/push", json={"message": job}).json["error"]["details"]
    assert [(d["index"], d["path"]) for d in details] == [(0, "assets")]


def test_job_with_extra_fields_is_accepted(manager, job_queue):
    assert manager.post(f"{job_queue}/push", json={"message": {**JOB, "priority": 3}}).status_code == 201


def test_result_queue_checks_the_result_schema(admin, manager):
    admin.post("/queues", json={"name": "results", "schema": "result"})
    result = {
        "id": 1,
        "job_id": "job-1",
        "timestamp": "2026-11-28T10:05:00+01:00",
        "assets": ["AAPL"],
        "results": {"AAPL": {"sma_20": 101.5}},
    }
    assert manager.post("/queues/results/push", json={"message": result}).status_code == 201
    response = manager.post("/queues/results/push", json={"message": {**result, "results": None}})
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["path"] == "results"


def test_every_response_carries_a_request_id_and_echoes_the_clients(client, manager, jobs):
    assert len(client.get("/health").headers["X-Request-ID"]) >= 16
    assert (
        manager.post(f"{jobs}/pull", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    )
    assert client.get("/nowhere", headers={"X-Request-ID": "r1"}).headers["X-Request-ID"] == "r1"


def test_unexpected_error_is_a_json_500_with_the_traceback_only_in_the_log(app, client, caplog):
    def explode():
        raise RuntimeError("secret internals")

    app.add_url_rule("/explode", view_func=explode)
    response = client.get("/explode")
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert b"secret internals" not in response.data and b"Traceback" not in response.data
    assert "secret internals" in caplog.text and response.headers["X-Request-ID"] in caplog.text
