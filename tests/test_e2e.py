"""End to end against a real `gunicorn -c gunicorn.conf.py wsgi:app`: order, batches, long polls,
restarts, start-up failures and the request log, as producers and workers see them."""

import json
import signal
import subprocess
import threading
import time

import pytest
import requests

from tests.conftest import PASSWORDS, REPO
from tests.live_server import GUNICORN, LiveServer

pytestmark = pytest.mark.slow
JOB = {
    "id": 7,
    "timestamp": "2026-11-28T10:00:00Z",
    "status": "pending",
    "date_range": {"start": "2026-01-01", "end": "2026-03-31"},
    "assets": ["AAPL"],
}


@pytest.fixture
def queue(live, request):
    """A fresh queue on the shared server, named after the test; returns (session, its URL)."""
    name = request.node.name.replace("[", ".").replace("]", "")[:60]
    admin = live.session("admin")
    assert admin.post(live.url("/queues"), json={"name": name, "max_messages": 5}).status_code == 201
    yield live.session("manager"), live.url(f"/queues/{name}")
    admin.delete(live.url(f"/queues/{name}"))


def test_pull_returns_messages_in_push_order(queue):
    session, url = queue
    session.post(f"{url}/push", json={"message": {"n": 0}})
    session.post(f"{url}/push", json={"messages": [{"n": 1}, {"n": 2}]})
    session.post(f"{url}/push", json={"message": {"n": 3}})
    assert [session.post(f"{url}/pull").json()["message"]["n"] for _ in range(4)] == [0, 1, 2, 3]
    assert session.post(f"{url}/pull").status_code == 204


def test_batch_that_does_not_fit_adds_nothing(queue):
    session, url = queue
    session.post(f"{url}/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]})
    response = session.post(f"{url}/push", json={"messages": [{"n": 4}, {"n": 5}, {"n": 6}]})
    assert response.status_code == 409 and response.json()["error"]["code"] == "queue_full"
    assert [m["message"]["n"] for m in session.post(f"{url}/pull?max=10").json()["messages"]] == [1, 2, 3]


def test_batch_with_one_invalid_job_adds_nothing(live):
    admin = live.session("admin")
    admin.post(live.url("/queues"), json={"name": "e2e-jobs", "schema": "job"})
    bad = {**JOB, "assets": []}
    response = admin.post(live.url("/queues/e2e-jobs/push"), json={"messages": [JOB, JOB, bad]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["index"] == 2
    assert admin.get(live.url("/queues/e2e-jobs")).json()["size"] == 0


def test_long_poll_is_woken_by_a_push(queue):
    session, url = queue
    result = {}

    def pull():
        started = time.monotonic()
        response = requests.post(f"{url}/pull?wait=10", auth=("manager", PASSWORDS["manager"]), timeout=30)
        result.update(response=response, elapsed=time.monotonic() - started)

    puller = threading.Thread(target=pull)
    puller.start()
    time.sleep(0.5)
    session.post(f"{url}/push", json={"message": {"wake": "up"}})
    puller.join(30)
    assert result["response"].status_code == 200
    assert result["response"].json()["message"] == {"wake": "up"}
    assert result["elapsed"] < 5


def test_long_poll_on_an_empty_queue_answers_204_after_the_wait(queue):
    session, url = queue
    started = time.monotonic()
    assert session.post(f"{url}/pull?wait=1").status_code == 204
    assert time.monotonic() - started >= 0.9


def test_errors_are_json_through_gunicorn(live):
    assert requests.get(live.url("/nowhere"), timeout=5).json()["error"]["code"] == "not_found"
    unauthorized = requests.get(live.url("/queues"), auth=("admin", "wrong"), timeout=5)
    assert (
        unauthorized.status_code == 401 and unauthorized.headers["WWW-Authenticate"] == 'Basic realm="queues"'
    )
    chunked = live.session().post(
        live.url("/queues/nope/push"),
        data=iter([b'{"message":', b"{}}"]),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.json()["error"]["code"] == "queue_not_found"


def test_body_over_the_limit_is_413_even_when_chunked(live):
    live.session("admin").post(live.url("/queues"), json={"name": "e2e-big"})
    big = b'{"message": {"s": "' + b"x" * 1_100_000 + b'"}}'
    for body in (big, iter([big[i : i + 65536] for i in range(0, len(big), 65536)])):
        response = live.session().post(
            live.url("/queues/e2e-big/push"), data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_snapshot_survives_kill_9_after_the_interval(tmp_path):
    server = LiveServer(tmp_path, persistence={"interval_seconds": 0.5})
    try:
        server.start()
        admin = server.session()
        created = admin.post(server.url("/queues"), json={"name": "jobs", "max_messages": 50}).json()
        admin.post(server.url("/queues/jobs/push"), json={"messages": [{"n": n} for n in range(5)]})
        admin.post(server.url("/queues/jobs/pull"))
        pushed_at = time.time()
        snapshot = tmp_path / "data" / "queues.pickle"
        deadline = time.monotonic() + 10
        while not (snapshot.exists() and snapshot.stat().st_mtime > pushed_at):
            assert time.monotonic() < deadline, "no snapshot was written"
            time.sleep(0.1)
        time.sleep(0.2)
        server.kill9()
        server.start()
        info = server.session().get(server.url("/queues/jobs")).json()
        assert (info["created_at"], info["max_messages"]) == (created["created_at"], 50)
        assert (info["size"], info["pushed_total"], info["pulled_total"]) == (4, 5, 1)
        pulled = server.session().post(server.url("/queues/jobs/pull?max=10")).json()["messages"]
        assert [m["message"]["n"] for m in pulled] == [1, 2, 3, 4]
    finally:
        server.stop()


def test_sigterm_saves_everything_and_ends_long_polls(tmp_path):
    server = LiveServer(tmp_path, persistence={"interval_seconds": 3600})  # only the shutdown saves
    try:
        server.start()
        admin = server.session()
        admin.post(server.url("/queues"), json={"name": "jobs"})
        admin.post(server.url("/queues"), json={"name": "idle"})
        admin.post(server.url("/queues/jobs/push"), json={"messages": [{"n": n} for n in range(3)]})
        poll = threading.Thread(
            target=lambda: admin.post(server.url("/queues/idle/pull?wait=20"), timeout=30)
        )
        poll.start()
        time.sleep(0.5)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10, "a waiting long poll held up the stop"
        poll.join(30)
        server.start()
        pulled = server.session().post(server.url("/queues/jobs/pull?max=10")).json()["messages"]
        assert [m["message"]["n"] for m in pulled] == [0, 1, 2]
    finally:
        server.stop()


def start_expecting_failure(server):
    server.start(wait=False)
    try:
        return server.process.wait(60)
    except subprocess.TimeoutExpired:
        server.kill9()
        raise AssertionError("gunicorn kept running") from None


def test_unreadable_snapshot_stops_start_up_and_is_left_as_it_was(tmp_path):
    server = LiveServer(tmp_path)
    snapshot = tmp_path / "data" / "queues.pickle"
    snapshot.parent.mkdir()
    snapshot.write_bytes(b"\x80\x05garbage that is no pickle")
    assert start_expecting_failure(server) != 0
    assert str(snapshot) in server.stderr()
    assert snapshot.read_bytes() == b"\x80\x05garbage that is no pickle"


def test_bad_config_stops_start_up_naming_section_and_key(tmp_path):
    server = LiveServer(tmp_path, queues={"max_batch": "lots"})
    assert start_expecting_failure(server) != 0
    assert "[queues] max_batch" in server.stderr() and "an integer" in server.stderr()


def test_request_log_has_both_lines_of_every_request_and_no_password(tmp_path):
    server = LiveServer(tmp_path)
    try:
        server.start()
        admin = server.session()
        admin.post(server.url("/queues"), json={"name": "jobs"}, headers={"X-Request-ID": "client-id-1"})
        admin.post(server.url("/queues/jobs/push"), json={"message": {"n": 1}})
        requests.get(server.url("/queues"), auth=("admin", "a-wrong-password"), timeout=5)
        server.stop()
        text = (tmp_path / "logs" / "requests.log").read_text()
    finally:
        server.stop()
    entries = [json.loads(line) for line in text.splitlines()]
    directions = {}
    for entry in entries:
        directions.setdefault(entry["request_id"], []).append(entry["direction"])
    assert all(sorted(d) == ["request", "response"] for d in directions.values())
    assert "client-id-1" in directions
    assert {e["headers"].get("Authorization") for e in entries if e["direction"] == "request"} <= {
        "Basic ***",
        None,
    }
    assert PASSWORDS["admin"] not in text and "a-wrong-password" not in text
    request_line = next(e for e in entries if e["request_id"] == "client-id-1")
    assert (
        request_line["source"].startswith("127.0.0.1:")
        and request_line["destination"] == f"127.0.0.1:{server.port}"
    )


def test_gunicorn_runs_one_worker_with_the_configured_threads(tmp_path):
    result = subprocess.run(
        [GUNICORN, "-c", "gunicorn.conf.py", "--print-config", "wsgi:app"],
        cwd=REPO,
        env={
            "QUEUES_CONFIG": str(LiveServer(tmp_path / "server", server={"threads": 9}).config),
            "PATH": "",
            "TMPDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    settings = {
        key.strip(): value.strip()
        for key, value in (line.split(" = ", 1) for line in result.stdout.splitlines() if " = " in line)
    }
    assert (settings["workers"], settings["threads"]) == ("1", "9")
    assert settings["worker_class"] == "queues.http_worker.RequestBufferingWorker"
    assert not list(tmp_path.glob("queues-metrics-*")), "the master left its metrics folder behind"
