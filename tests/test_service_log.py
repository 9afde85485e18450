"""What the service says about itself: the start-up and shutdown lines on stderr, the name a failed
login tried in the request log, and the limit in the 413 message."""

import io
import json

import pytest

from app import shutdown
from tests.conftest import basic
from tests.live_server import LiveServer


def test_a_failed_login_is_logged_under_the_name_it_tried(make_app, tmp_path):
    app = make_app()
    client = app.test_client()
    client.get("/queues", headers=basic("mallory", "guess"))
    client.get("/queues", headers=basic("admin", "wrong"))
    client.get("/queues")
    shutdown(app)
    lines = [json.loads(line) for line in (tmp_path / "logs" / "requests.log").read_text().splitlines()]
    responses = [
        (e["metadata"]["user"], e["metadata"]["status"]) for e in lines if e["direction"] == "response"
    ]
    assert responses == [("mallory", 401), ("admin", 401), (None, 401)]


@pytest.mark.parametrize("chunked", [False, True], ids=["Content-Length", "chunked"])
def test_the_413_message_names_the_limit_in_bytes(make_app, chunked):
    client = make_app(queues={"max_request_bytes": 2048}).test_client()
    client.post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    body = json.dumps({"message": {"pad": "x" * 5000}}).encode()
    headers = {**basic("admin"), "Content-Type": "application/json"}
    if chunked:  # no Content-Length: the limit is found while reading
        response = client.post("/queues/jobs/push", input_stream=io.BytesIO(body), headers=headers)
    else:
        response = client.post("/queues/jobs/push", data=body, headers=headers)
    assert response.status_code == 413
    assert response.get_json()["error"] == {
        "code": "payload_too_large",
        "message": "the request body is over the limit of 2048 bytes",
    }


@pytest.mark.slow
def test_start_and_stop_each_say_what_they_did(tmp_path):
    server = LiveServer(tmp_path)
    server.start()
    try:
        admin = server.session()
        for name in ("a", "b"):
            admin.post(server.url("/queues"), json={"name": name})
        admin.post(server.url("/queues/a/push"), json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]})
        assert server.stop() == 0
        assert "stopping: the final snapshot" in server.stderr()
        assert str(tmp_path / "data" / "queues.pickle") in server.stderr()
        server.start()
        started = [line for line in server.stderr().splitlines() if "started with config" in line]
        assert len(started) == 1
        assert started[0].endswith(
            f"started with config {server.config}, memory backend: 2 queue(s) and 3 message(s) restored"
        )
    finally:
        server.stop()
