"""The example worker end to end: jobs become valid results, a killed worker's job is redone."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from tests.conftest import PASSWORDS, REPO, backend_sections, eventually
from tests.live_server import LiveServer, skip_without_route
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow
RESULT_SCHEMA = Draft202012Validator(
    yaml.safe_load((REPO / "schemas" / "result.yaml").read_text()), format_checker=FormatChecker()
)


def run_example(server, script, *args, user="manager", wait=True, stderr=subprocess.DEVNULL):
    env = {
        **os.environ,
        "QUEUES_URL": server.base_url,
        "QUEUES_USER": user,
        "QUEUES_PASSWORD": PASSWORDS[user],
    }
    command = [sys.executable, str(REPO / "examples" / script), *args]
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def results(server):
    pulled = server.session().post(server.url("/queues/results/pull?max=100"))
    return [] if pulled.status_code == 204 else pulled.json()["messages"]


@pytest.fixture
def server(tmp_path):
    live = LiveServer(tmp_path)
    live.start()
    yield live
    live.stop()


def test_three_workers_turn_twenty_jobs_into_twenty_valid_results(server):
    run_example(server, "producer.py", "--count", "20", user="admin")
    workers = [
        run_example(server, "worker.py", "--idle-exit", "2", "--wait", "1", wait=False) for _ in range(3)
    ]
    for worker in workers:
        assert worker.wait(120) == 0
    produced = results(server)
    assert sorted(r["message"]["job_id"] for r in produced) == sorted(f"job-{n}" for n in range(20))
    for result in produced:
        assert not list(RESULT_SCHEMA.iter_errors(result["message"]))
    info = server.session().get(server.url("/queues/jobs")).json()
    assert (info["size"], info["acked_total"]) == (0, 20)


def test_a_job_held_by_a_killed_worker_is_done_by_another_after_its_lease(server):
    run_example(server, "producer.py", "--count", "1", user="admin")
    doomed = run_example(server, "worker.py", "--lease", "2", "--work-seconds", "30", wait=False)
    eventually(lambda: server.session().get(server.url("/queues/jobs")).json()["in_flight"] == 1, timeout=30)
    time.sleep(3)  # longer than the lease: the heartbeat keeps it while the worker lives
    assert server.session().get(server.url("/queues/jobs")).json()["in_flight"] == 1
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    run_example(server, "worker.py", "--max-jobs", "1", "--lease", "5", "--wait", "10")
    (result,) = results(server)
    assert result["message"]["job_id"] == "job-0"
    server.stop()  # flushes the request log
    log = [json.loads(line) for line in (server.directory / "logs" / "requests.log").read_text().splitlines()]
    deliveries = [
        json.loads(entry["body"])["deliveries"]
        for entry in log
        if entry["direction"] == "response"
        and entry["path"] == "/queues/jobs/pull"
        and entry["metadata"]["status"] == 200
    ]
    assert deliveries == [1, 2]


def test_a_job_that_cannot_be_computed_ends_in_the_dead_letter_queue_with_the_reason(server):
    skip_without_route(server)  # the worker's nack gives a reason, which the v1 server refuses
    admin = server.session()
    run_example(server, "producer.py", "--count", "0", user="admin")
    poison = {"id": "bad", "timestamp": "2026-11-28T10:00:00Z", "status": "pending",
              "date_range": {"start": "2026-01-03", "end": "2026-01-04"}, "assets": ["AAPL"]}  # fmt: skip
    admin.post(server.url("/queues/jobs/push"), json={"message": poison})  # a weekend: no business day
    run_example(server, "worker.py", "--idle-exit", "1", "--wait", "0.5")
    dead = admin.post(server.url("/queues/jobs.dead/pull")).json()
    assert dead["message"]["id"] == "bad"
    assert dead["dead_letter"]["reason"] == "the date range holds no business day"
    assert admin.get(server.url("/queues/jobs")).json()["dead_lettered_total"] == 1


def run_worker_through(server, tmp_path, outage):
    """20 jobs for one worker, with outage() called once 3 results are in; returns what it said."""
    run_example(server, "producer.py", "--count", "20", user="admin")
    admin = server.session()
    with open(tmp_path / "worker.err", "w") as stderr:
        worker = run_example(server, "worker.py", "--max-jobs", "20", "--work-seconds", "0.2", "--wait", "1",
                             wait=False, stderr=stderr)  # fmt: skip
        eventually(lambda: admin.get(server.url("/queues/results")).json()["size"] >= 3, timeout=60)
        outage()
        assert worker.wait(120) == 0
    said = (tmp_path / "worker.err").read_text()
    assert "Traceback" not in said and "trying again in" in said
    assert said.splitlines()[-1] == "worker: 20 job(s) done"
    assert sorted({r["message"]["job_id"] for r in results(server)}) == sorted(f"job-{n}" for n in range(20))
    return said


def test_a_worker_keeps_going_across_a_server_restart_and_finishes_its_jobs(server, tmp_path):
    def restart():
        server.stop()
        time.sleep(2)  # the worker finds nobody listening for a while
        server.start()

    assert "unreachable" in run_worker_through(server, tmp_path, restart)


def test_a_worker_keeps_going_across_a_storage_outage_and_finishes_its_jobs(tmp_path):
    (tmp_path / "redis").mkdir()
    store = RedisServer(tmp_path / "redis", appendonly=True).start()
    server = LiveServer(tmp_path / "service", storage={"backend": "redis", "redis_url": store.url})

    def redis_away():
        store.stop()
        time.sleep(2)  # the service answers 503 storage_unavailable meanwhile
        store.start()

    try:
        server.start()
        assert "storage_unavailable" in run_worker_through(server, tmp_path, redis_away)
    finally:
        server.stop()
        store.stop()


def test_a_long_job_keeps_its_lease_across_a_service_restart_on_redis(tmp_path, redis_server):
    # Leases live in Redis, so they outlast the service; the worker's heartbeat must outlast it too.
    server = LiveServer(tmp_path / "service", **backend_sections("redis", redis_server)).start()
    try:
        run_example(server, "producer.py", "--count", "1", user="admin")
        with open(tmp_path / "worker.err", "w") as stderr:
            worker = run_example(
                server, "worker.py", "--max-jobs", "1", "--lease", "9", "--work-seconds", "24",
                wait=False, stderr=stderr,
            )  # fmt: skip
            jobs = server.url("/queues/jobs")
            eventually(lambda: server.session().get(jobs).json()["in_flight"] == 1, timeout=30)
            server.stop()
            time.sleep(1.5)  # a heartbeat finds nobody listening
            server.start()
            time.sleep(10)  # longer than the lease: only the heartbeat can have kept it
            assert server.session().get(jobs).json()["in_flight"] == 1
            assert worker.wait(60) == 0
        (result,) = results(server)
        assert result["message"]["job_id"] == "job-0"
        assert server.session().get(jobs).json()["acked_total"] == 1
    finally:
        server.stop()
