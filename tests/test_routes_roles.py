"""Who may call which route: the role matrix of API.md, and the order in which checks apply."""

import pytest

from tests.conftest import basic

JOB = {"message": {"x": 1}}

# (method, path, json body, status for admin, status for manager)
ROUTES = [
    ("get", "/queues", None, 200, 200),
    ("get", "/metrics", None, 200, 200),
    ("post", "/queues", {"name": "new"}, 201, 403),
    ("get", "/queues/jobs", None, 200, 200),
    ("delete", "/queues/jobs", None, 200, 403),
    ("post", "/queues/jobs/push", JOB, 201, 201),
    ("post", "/queues/jobs/pull", None, 204, 204),
    ("post", "/queues/jobs/pull?lease=30", None, 204, 204),
    # Unknown receipts: a 409 shows that the role check passed.
    ("post", "/queues/jobs/ack", {"receipt": "r"}, 409, 409),
    ("post", "/queues/jobs/nack", {"receipt": "r"}, 409, 409),
    ("post", "/queues/jobs/extend", {"receipt": "r", "lease": 5}, 409, 409),
    ("get", "/queues/jobs/messages", None, 200, 200),
    ("get", "/queues/jobs/messages?state=leased", None, 200, 200),
    ("post", "/queues/jobs/purge", None, 200, 403),
    ("post", "/queues/jobs/redrive", {}, 200, 403),
]
CREDENTIALS = {
    "no credentials": {},
    "wrong password": basic("admin", "not-the-password"),
    "unknown user": basic("mallory", "whatever"),
    "malformed header": {"Authorization": "Basic !!!not-base64"},
    "bearer token": {"Authorization": "Bearer abc"},
}


@pytest.fixture
def with_jobs(admin):
    assert admin.post("/queues", json={"name": "jobs"}).status_code == 201


@pytest.mark.parametrize(("method", "path", "body", "_a", "_m"), ROUTES)
@pytest.mark.parametrize("credentials", CREDENTIALS.values(), ids=CREDENTIALS.keys())
def test_route_without_valid_credentials_is_401_with_a_basic_challenge(
    client, with_jobs, method, path, body, _a, _m, credentials
):
    response = getattr(client, method)(path, json=body, headers=credentials)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Basic realm="queues"'


@pytest.mark.parametrize(("method", "path", "body", "_a", "_m"), ROUTES)
def test_role_without_access_is_403_on_every_route(client, with_jobs, method, path, body, _a, _m):
    response = getattr(client, method)(path, json=body, headers=basic("auditor"))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "body", "admin_status", "manager_status"), ROUTES)
def test_admin_and_manager_get_what_their_role_allows(
    client, with_jobs, method, path, body, admin_status, manager_status
):
    as_manager = getattr(client, method)(path, json=body, headers=basic("manager"))
    assert as_manager.status_code == manager_status
    if manager_status == 403:
        assert as_manager.json["error"]["code"] == "forbidden"
    as_admin = getattr(client, method)(path, json=body, headers=basic("admin"))
    assert as_admin.status_code == admin_status


@pytest.mark.parametrize("path", ["/health", "/openapi.yaml"])
@pytest.mark.parametrize("credentials", [{}, basic("admin", "wrong"), basic("auditor")])
def test_public_routes_ignore_credentials(client, path, credentials):
    assert client.get(path, headers=credentials).status_code == 200


def test_unknown_route_is_404_not_found_whatever_the_credentials(client):
    for headers in ({}, basic("admin", "wrong"), basic("admin")):
        response = client.get("/nowhere", headers=headers)
        assert response.status_code == 404
        assert response.json["error"]["code"] == "not_found"


def test_wrong_method_on_a_known_route_is_405_before_authentication(client):
    response = client.put("/queues", headers={})
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_authentication_is_checked_before_the_queue_name(client):
    assert client.get("/queues/bad!name").status_code == 401


def test_role_is_checked_before_the_queue_name(client):
    assert client.delete("/queues/bad!name", headers=basic("manager")).status_code == 403


def test_queue_name_is_checked_before_existence(admin):
    response = admin.get("/queues/-bad")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_queue_name"


def test_existence_is_checked_before_the_body(manager):
    response = manager.post("/queues/missing/push", data="not json", content_type="text/plain")
    assert response.status_code == 404
    assert response.json["error"] == {"code": "queue_not_found", "message": "queue 'missing' does not exist"}


def test_changed_password_takes_effect_without_restart(app, client, tmp_path, monkeypatch):
    from queues import auth as auth_module
    from tests.conftest import PASSWORDS, write_users

    monkeypatch.setattr(auth_module, "RELOAD_CHECK_SECONDS", 0.0)
    assert client.get("/queues", headers=basic("manager")).status_code == 200
    write_users(tmp_path / "users.yaml", {**PASSWORDS, "manager": "a-new-password"})
    assert client.get("/queues", headers=basic("manager")).status_code == 401
    assert client.get("/queues", headers=basic("manager", "a-new-password")).status_code == 200
