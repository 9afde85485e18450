"""GET /metrics: who may read it, and that its figures follow the queues, errors, requests and snapshots."""

import os
import signal
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from queues.errors import StorageUnavailable
from tests.conftest import PASSWORDS, backend_sections, basic, eventually
from tests.live_server import LiveServer

PUSH_ROUTE = "/queues/<name>/push"


def parse(text):
    """{(sample name, ((label, value), ...)): value} of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, user="admin"):
    response = client.get("/metrics", headers=basic(user))
    assert response.status_code == 200
    return parse(response.get_data(as_text=True))


def value(samples, name, **labels):
    """The sample's value, or None when the series is absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


def queue_figures(samples, queue):
    names = ("depth", "in_flight", "pushed", "pulled", "acked", "dead_lettered")
    series = ["queues_queue_depth", "queues_queue_in_flight"] + [
        f"queues_messages_{name}_total" for name in names[2:]
    ]
    return dict(zip(names, (value(samples, s, queue=queue) for s in series), strict=True))


@pytest.mark.parametrize(
    "headers",
    [{}, basic("admin", "not-the-password"), basic("mallory", "whatever")],
    ids=["no credentials", "wrong password", "unknown user"],
)
def test_metrics_without_valid_credentials_is_401(client, headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Basic realm="queues"'


def test_metrics_for_a_role_without_access_is_403(client):
    response = client.get("/metrics", headers=basic("auditor"))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


@pytest.mark.parametrize("user", ["admin", "manager"])
def test_admin_and_manager_read_metrics_in_prometheus_text_format(client, user):
    response = client.get("/metrics", headers=basic(user))
    assert response.status_code == 200
    assert response.mimetype == "text/plain" and "version=0.0.4" in response.content_type
    families = {f.name: f.type for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert families["queues_storage_up"] == "gauge"
    assert families["queues_http_request_duration_seconds"] == "histogram"


@pytest.fixture
def app(app_on_each_backend):
    """The tests that take `app` (or `client`, `admin`) run on both backends."""
    return app_on_each_backend


def test_queue_figures_follow_pushes_leased_and_plain_pulls_and_acks(admin):
    admin.post("/queues", json={"name": "jobs"})
    admin.post("/queues", json={"name": "idle"})
    admin.post("/queues/jobs/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]})
    receipt = admin.post("/queues/jobs/pull?lease=30").json["receipt"]
    assert admin.post("/queues/jobs/pull").status_code == 200
    figures = queue_figures(scrape(admin), "jobs")
    assert figures == {"depth": 2, "in_flight": 1, "pushed": 4, "pulled": 2, "acked": 0, "dead_lettered": 0}
    assert admin.post("/queues/jobs/ack", json={"receipt": receipt}).status_code == 200
    samples = scrape(admin)
    assert queue_figures(samples, "jobs") == {
        "depth": 2,
        "in_flight": 0,
        "pushed": 4,
        "pulled": 2,
        "acked": 1,
        "dead_lettered": 0,
    }
    assert value(samples, "queues_queue_depth", queue="idle") == 0
    assert value(samples, "queues_queue_max_messages", queue="jobs") == 10000
    assert value(samples, "queues_storage_up") == 1


def test_dead_lettered_messages_are_counted_on_their_queue(admin):
    admin.post("/queues", json={"name": "jobs.dead"})
    admin.post("/queues", json={"name": "jobs", "max_deliveries": 1, "dead_letter_queue": "jobs.dead"})
    admin.post("/queues/jobs/push", json={"message": {"n": 1}})
    receipt = admin.post("/queues/jobs/pull?lease=30").json["receipt"]
    assert admin.post("/queues/jobs/nack", json={"receipt": receipt}).json["dead_lettered"] is True
    samples = scrape(admin)
    assert queue_figures(samples, "jobs")["dead_lettered"] == 1
    assert queue_figures(samples, "jobs.dead")["depth"] == 1


def test_deleted_queue_has_no_series(admin):
    admin.post("/queues", json={"name": "gone"})
    admin.delete("/queues/gone")
    assert value(scrape(admin), "queues_queue_depth", queue="gone") is None


def test_errors_are_counted_by_their_code(client, admin):
    admin.post("/queues", json={"name": "jobs"})
    for _ in range(2):
        assert admin.get("/queues/nope").json["error"]["code"] == "queue_not_found"
    assert client.get("/queues").status_code == 401
    assert admin.get("/no/such/route").status_code == 404
    assert admin.post("/queues/jobs/push", json={"msg": {}}).json["error"]["code"] == "invalid_request"
    assert admin.get("/queues/jobs").status_code == 200  # a success counts nowhere
    samples = scrape(admin)
    errors = {
        dict(labels)["code"]: count
        for (name, labels), count in samples.items()
        if name == "queues_http_errors_total"
    }
    assert errors == {"queue_not_found": 2, "unauthorized": 1, "not_found": 1, "invalid_request": 1}


def test_latency_histogram_counts_requests_by_route_template_not_path(admin):
    admin.post("/queues", json={"name": "jobs"})
    admin.post("/queues", json={"name": "other"})
    count = "queues_http_request_duration_seconds_count"
    before = value(scrape(admin), count, method="POST", route=PUSH_ROUTE, status="201") or 0
    for name in ("jobs", "jobs", "other"):
        assert admin.post(f"/queues/{name}/push", json={"message": {}}).status_code == 201
    admin.get("/no/such/route")
    admin.open("/queues", method="BREW")
    samples = scrape(admin)
    assert value(samples, count, method="POST", route=PUSH_ROUTE, status="201") == before + 3
    assert value(samples, count, method="GET", route="unmatched", status="404") == 1
    assert value(samples, count, method="other", route="unmatched", status="405") == 1
    routes = {dict(labels)["route"] for (name, labels) in samples if name == count}
    assert not any("jobs" in route or "other" in route for route in routes)
    bucket = "queues_http_request_duration_seconds_bucket"
    assert value(samples, bucket, le="+Inf", method="POST", route=PUSH_ROUTE, status="201") == before + 3


def test_metrics_still_answer_while_the_storage_is_away(client, app, monkeypatch):
    def unavailable():
        raise StorageUnavailable("storage is away")

    monkeypatch.setattr(app.extensions["queues.backend"].queues, "list", unavailable)
    samples = scrape(client)
    assert value(samples, "queues_storage_up") == 0
    assert not any(name == "queues_queue_depth" for name, _ in samples)


def test_two_instances_on_one_redis_report_the_same_queue_figures(make_app, redis_server):
    sections = backend_sections("redis", redis_server, workers=1)
    first, second = make_app(**sections).test_client(), make_app(**sections).test_client()
    first.post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    first.post("/queues/jobs/push", json={"messages": [{}, {}, {}]}, headers=basic("admin"))
    second.post("/queues/jobs/pull?lease=30", headers=basic("manager"))
    assert queue_figures(scrape(first), "jobs") == queue_figures(scrape(second), "jobs")
    assert queue_figures(scrape(second), "jobs")["pushed"] == 3
    assert queue_figures(scrape(first), "jobs")["in_flight"] == 1


def test_snapshot_series_appear_once_a_snapshot_is_written(make_app):
    app = make_app()
    client = app.test_client()
    samples = scrape(client)
    assert value(samples, "queues_snapshot_failures_total") == 0
    assert value(samples, "queues_snapshot_last_success_timestamp_seconds") is None
    client.post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    assert app.extensions["queues.backend"].snapshotter.save() is True
    samples = scrape(client)
    assert time.time() - 60 < value(samples, "queues_snapshot_last_success_timestamp_seconds") <= time.time()
    assert 0 < value(samples, "queues_snapshot_last_duration_seconds") < 60


def test_snapshot_failures_are_counted(make_app, tmp_path):
    app = make_app()
    client = app.test_client()
    client.post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    (tmp_path / "data").rename(tmp_path / "moved")
    try:
        assert app.extensions["queues.backend"].snapshotter.save() is False
        assert app.extensions["queues.backend"].snapshotter.save() is False
    finally:
        (tmp_path / "moved").rename(tmp_path / "data")
    samples = scrape(client)
    assert value(samples, "queues_snapshot_failures_total") == 2
    assert value(samples, "queues_snapshot_last_success_timestamp_seconds") is None


def test_redis_backend_has_no_snapshot_series(make_app, redis_server):
    app = make_app(**backend_sections("redis", redis_server, workers=1))
    assert not any(name.startswith("queues_snapshot_") for name, _ in scrape(app.test_client()))


@pytest.mark.slow
def test_gunicorn_adds_up_errors_across_requests_and_worker_restarts(tmp_path):
    server = LiveServer(tmp_path).start()
    try:
        session = server.session("manager")

        def not_found_errors():
            response = session.get(server.url("/metrics"), timeout=10)
            assert response.status_code == 200
            return value(parse(response.text), "queues_http_errors_total", code="queue_not_found") or 0

        for _ in range(2):
            assert session.get(server.url("/queues/nope"), timeout=10).status_code == 404
        assert not_found_errors() == 2
        # The worker's figures are in the multiprocess folder, so they outlive it.
        (worker,) = server.worker_pids()
        os.kill(worker, signal.SIGKILL)
        eventually(lambda: server.worker_pids() not in ([], [worker]))
        server.wait_healthy()
        assert session.get(server.url("/queues/nope"), timeout=10).status_code == 404
        assert not_found_errors() == 3
        count = value(
            parse(session.get(server.url("/metrics"), timeout=10).text),
            "queues_http_request_duration_seconds_count",
            method="GET",
            route="/queues/<name>",
            status="404",
        )
        assert count == 3
    finally:
        server.stop()


@pytest.mark.slow
def test_every_worker_answers_with_the_sum_over_all_workers(tmp_path, redis_server):
    server = LiveServer(tmp_path, **backend_sections("redis", redis_server, workers=3)).start()
    manager = ("manager", PASSWORDS["manager"])
    try:
        eventually(lambda: len(server.worker_pids()) == 3)
        for _ in range(12):  # a new connection each time, so the workers share them out
            assert requests.get(server.url("/queues/nope"), auth=manager, timeout=10).status_code == 404
        answers = set()
        for _ in range(12):
            response = requests.get(server.url("/metrics"), auth=manager, timeout=10)
            answers.add(value(parse(response.text), "queues_http_errors_total", code="queue_not_found"))
        assert answers == {12}
    finally:
        server.stop()


def test_a_metric_that_cannot_be_written_does_not_fail_the_request(app, admin, monkeypatch, caplog):
    def file_too_large(*labels):
        raise OSError(27, "File too large")  # what a full disk or RLIMIT_FSIZE gives the metric files

    monkeypatch.setattr(app.extensions["queues.metrics"].latency, "labels", file_too_large)
    assert admin.post("/queues", json={"name": "jobs"}).status_code == 201
    assert admin.get("/queues/jobs").status_code == 200
    assert caplog.text.count("metrics: cannot record requests") == 1
