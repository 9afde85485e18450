"""The request log: a JSON line for every request and response, with secrets masked."""

import json
import logging
import re

import pytest

from app import shutdown
from queues.log_writer import LogWriter
from tests.conftest import PASSWORDS, basic, eventually


@pytest.fixture
def logged(make_app, tmp_path):
    """An app, and a function that shuts it down (flushing the log) and returns the log's lines."""

    def make(**sections):
        app = make_app(**sections)

        def lines():
            shutdown(app)
            text = (tmp_path / "logs" / "requests.log").read_text()
            return text, [json.loads(line) for line in text.splitlines()]

        return app.test_client(), lines

    return make


def test_every_request_gets_a_request_line_and_a_response_line(logged):
    client, lines = logged()
    client.post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    client.get("/nowhere")
    client.get("/queues", headers=basic("admin", "wrong"))
    _, entries = lines()
    assert len(entries) == 6
    by_id = {}
    for entry in entries:
        by_id.setdefault(entry["request_id"], []).append(entry["direction"])
    assert list(by_id.values()) == [["request", "response"]] * 3


def test_lines_carry_the_documented_fields(logged):
    client, lines = logged()
    client.post("/queues?x=1", json={"name": "jobs"}, headers={**basic("admin"), "X-Request-ID": "req-42"})
    _, (request_line, response_line) = lines()
    fields = [
        "ts",
        "request_id",
        "direction",
        "source",
        "destination",
        "method",
        "path",
        "headers",
        "metadata",
        "body",
    ]
    assert list(request_line) == fields and list(response_line) == fields
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", request_line["ts"])
    assert request_line["request_id"] == response_line["request_id"] == "req-42"
    assert (request_line["method"], request_line["path"]) == ("POST", "/queues")
    assert request_line["source"] == response_line["destination"]
    assert request_line["destination"] == response_line["source"]
    assert request_line["metadata"] == {"user": "admin", "role": "admin", "query": "x=1", "body_bytes": 16}
    assert json.loads(request_line["body"]) == {"name": "jobs"}
    meta = response_line["metadata"]
    assert (meta["status"], meta["user"], meta["role"], meta["query"]) == (201, "admin", "admin", "x=1")
    assert meta["duration_ms"] >= 0 and meta["body_bytes"] == len(response_line["body"])
    assert response_line["headers"]["X-Request-ID"] == "req-42"


def test_credentials_are_masked_and_the_password_is_nowhere(logged):
    client, lines = logged()
    client.get("/queues", headers={**basic("manager"), "X-Api-Key": "key-abc"})
    client.get("/queues", headers=basic("manager", "wrong-password-xyz"))
    text, entries = lines()
    assert entries[0]["headers"]["Authorization"] == "Basic ***"
    assert entries[0]["headers"]["X-Api-Key"] == "***"
    assert PASSWORDS["manager"] not in text and "wrong-password-xyz" not in text
    assert basic("manager")["Authorization"].split()[1] not in text


def test_long_bodies_are_cut_with_the_full_length_recorded(logged):
    client, lines = logged(logging={"max_body_bytes": 50})
    client.post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    client.post("/queues/jobs/push", json={"message": {"s": "x" * 500}}, headers=basic("admin"))
    _, entries = lines()
    push = entries[2]
    assert len(push["body"]) == 50
    assert push["metadata"]["body_bytes"] > 500 and push["metadata"]["body_truncated"] is True
    assert "body_truncated" not in entries[3]["metadata"]


def test_forwarded_client_is_the_source_only_behind_trusted_proxies(logged):
    client, lines = logged(server={"trusted_proxies": 1})
    client.get(
        "/health", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base={"REMOTE_ADDR": "10.0.0.2"}
    )
    _, entries = lines()
    assert entries[0]["source"] == "203.0.113.9"
    assert entries[1]["destination"] == "203.0.113.9"


def test_forwarded_header_is_ignored_without_trusted_proxies(logged):
    client, lines = logged()
    client.get(
        "/health",
        headers={"X-Forwarded-For": "203.0.113.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.2", "REMOTE_PORT": "5555"},
    )
    _, entries = lines()
    assert entries[0]["source"] == "10.0.0.2:5555"


def test_a_client_request_id_that_is_not_safe_is_replaced(logged):
    client, lines = logged()
    response = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["X-Request-ID"] != "bad id\twith spaces"
    _, entries = lines()
    assert entries[0]["request_id"] == response.headers["X-Request-ID"]


def test_logging_failure_never_fails_the_request(make_app, monkeypatch, caplog):
    from queues import request_log

    app = make_app()

    def broken(*args):
        raise RuntimeError("log is broken")

    monkeypatch.setattr(request_log, "_exchange", broken)
    assert app.test_client().get("/health").status_code == 200
    assert "could not be logged" in caplog.text


class _PlainFormatter(logging.Formatter):
    def format(self, record):
        return record  # the entries are the lines themselves


def test_a_full_disk_is_reported_counted_and_healed(tmp_path):
    path = tmp_path / "logs" / "requests.log"
    path.parent.mkdir()
    path.symlink_to("/dev/full")  # every write: ENOSPC
    drops = []
    writer = LogWriter(path, _PlainFormatter(), drops.append)
    try:
        writer.write("line-1")
        eventually(lambda: writer.failure is not None)
        assert str(path) in writer.failure and "No space left" in writer.failure
        assert sum(drops) == writer.dropped == 1
        path.unlink()
        path.write_text("")  # room again
        eventually(lambda: writer.failure is None)
        writer.write("line-2")
    finally:
        writer.close()
    assert path.read_text() == "line-2\n"


def test_a_second_writer_of_the_same_file_appends_after_a_cut_line(tmp_path):
    path = tmp_path / "requests.log"
    path.write_text("whole\ncut off")  # another worker's line, cut by a full disk
    writer = LogWriter(path, _PlainFormatter())
    writer.write("next")
    writer.close()
    assert writer.failure is None
    assert path.read_text() == "whole\ncut off\nnext\n"
