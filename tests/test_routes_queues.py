"""Creating, listing, inspecting and deleting queues over HTTP."""

import re

import pytest

from queues.backend import Backend, QueueBackend


@pytest.fixture
def app(app_on_each_backend):
    """Every test here runs on both backends."""
    return app_on_each_backend


ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_create_returns_201_queue_info_and_location(admin):
    response = admin.post("/queues", json={"name": "jobs", "max_messages": 500, "schema": "job"})
    assert response.status_code == 201
    assert response.headers["Location"] == "/queues/jobs"
    info = response.json
    assert {
        k: info[k] for k in ("name", "size", "max_messages", "schema", "pushed_total", "pulled_total")
    } == {
        "name": "jobs",
        "size": 0,
        "max_messages": 500,
        "schema": "job",
        "pushed_total": 0,
        "pulled_total": 0,
    }
    assert ISO_MS.fullmatch(info["created_at"])


def test_create_defaults_to_the_configured_maximum_and_no_schema(make_app, auth_header):
    client = make_app(queues={"max_messages": 321}).test_client()
    info = client.post("/queues", json={"name": "jobs"}, headers=auth_header("admin")).json
    assert (info["max_messages"], info["schema"]) == (321, None)


def test_create_of_an_existing_name_is_409_queue_exists(admin):
    admin.post("/queues", json={"name": "jobs"})
    response = admin.post("/queues", json={"name": "jobs", "max_messages": 3})
    assert response.status_code == 409
    assert response.json["error"]["code"] == "queue_exists"
    assert admin.get("/queues/jobs").json["max_messages"] != 3


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"name": 7}, "invalid_request"),
        ({"name": "jobs", "max_messages": 0}, "invalid_request"),
        ({"name": "jobs", "max_messages": 10_001}, "invalid_request"),
        ({"name": "jobs", "max_messages": True}, "invalid_request"),
        ({"name": "jobs", "max_messages": 5.0}, "invalid_request"),
        ({"name": "jobs", "max_messages": "5"}, "invalid_request"),
        ({"name": "jobs", "schema": "invoice"}, "invalid_request"),
        ({"name": "jobs", "max_message": 5}, "invalid_request"),
        ({"name": "-jobs"}, "invalid_queue_name"),
        ({"name": "a" * 65}, "invalid_queue_name"),
        ({"name": "jobs/x"}, "invalid_queue_name"),
        ({"name": "../etc"}, "invalid_queue_name"),
        ({"name": ""}, "invalid_queue_name"),
    ],
)
def test_create_with_a_bad_body_is_400_and_creates_nothing(admin, body, code):
    response = admin.post("/queues", json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == code
    assert admin.get("/queues").json == {"queues": []}


@pytest.mark.parametrize("name", ["a", "A9", "jobs.dead", "x_y-z.1", "9" + "a" * 63])
def test_create_accepts_every_name_the_pattern_allows(admin, name):
    assert admin.post("/queues", json={"name": name}).status_code == 201
    assert admin.get(f"/queues/{name}").json["name"] == name


def test_list_is_sorted_by_code_point(admin):
    for name in ["b", "B", "a", "_x" if False else "Z9", "a.b"]:
        admin.post("/queues", json={"name": name})
    names = [q["name"] for q in admin.get("/queues").json["queues"]]
    assert names == sorted(names) == ["B", "Z9", "a", "a.b", "b"]


def test_get_of_a_missing_queue_is_404_queue_not_found(admin):
    response = admin.get("/queues/nothing")
    assert response.status_code == 404
    assert response.json["error"] == {"code": "queue_not_found", "message": "queue 'nothing' does not exist"}


def test_delete_removes_the_queue_and_counts_its_messages(admin):
    admin.post("/queues", json={"name": "jobs"})
    admin.post("/queues/jobs/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]})
    response = admin.delete("/queues/jobs")
    assert response.status_code == 200
    assert response.json == {"name": "jobs", "deleted_messages": 3}
    assert admin.get("/queues/jobs").status_code == 404
    assert admin.delete("/queues/jobs").status_code == 404


def test_recreated_queue_starts_empty(admin):
    admin.post("/queues", json={"name": "jobs"})
    admin.post("/queues/jobs/push", json={"message": {"old": True}})
    admin.delete("/queues/jobs")
    admin.post("/queues", json={"name": "jobs"})
    assert admin.post("/queues/jobs/pull").status_code == 204


def test_health_reports_ok_and_the_queue_count(admin, client):
    admin.post("/queues", json={"name": "jobs"})
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    assert response.json["queues"] == 1


def test_openapi_document_is_served_as_yaml(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert b"openapi:" in response.data


def test_the_app_holds_one_backend_object_for_the_queues_their_threads_and_health(app):
    backend = app.extensions["queues.backend"]
    assert isinstance(backend, Backend) and isinstance(backend.queues, QueueBackend)
    failing, details = backend.health()
    assert failing is False and details["storage"]["last_error"] is None
    assert (backend.snapshotter is None) == (details["storage"]["backend"] == "redis")
