"""The snapshot thread and start-up restore, through the app."""

import pytest

from app import create_app, shutdown
from queues.config import load_config
from storage.snapshot import SnapshotError
from tests.conftest import basic, eventually, write_config


def test_state_written_at_shutdown_is_restored_at_start(tmp_path):
    config = load_config(write_config(tmp_path))
    app = create_app(config)
    client = app.test_client()
    client.post("/queues", json={"name": "jobs", "max_messages": 7, "schema": "job"}, headers=basic("admin"))
    client.post("/queues", json={"name": "plain"}, headers=basic("admin"))
    client.post(
        "/queues/plain/push", json={"messages": [{"n": 1}, {"n": 2}, {"n": 3}]}, headers=basic("admin")
    )
    client.post("/queues/plain/pull", headers=basic("admin"))
    before = client.get("/queues", headers=basic("admin")).json
    shutdown(app)

    again = create_app(config)
    try:
        client = again.test_client()
        assert client.get("/queues", headers=basic("admin")).json == before
        pulled = client.post("/queues/plain/pull?max=5", headers=basic("admin")).json["messages"]
        assert [m["message"] for m in pulled] == [{"n": 2}, {"n": 3}]
    finally:
        shutdown(again)


def test_snapshot_is_written_every_interval(make_app, tmp_path):
    app = make_app(persistence={"interval_seconds": 0.1})
    app.test_client().post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    eventually((tmp_path / "data" / "queues.pickle").exists)
    eventually(lambda: app.test_client().get("/health").json["snapshot"]["last_saved_at"] is not None)


def test_failing_snapshot_makes_health_degraded_until_it_recovers(make_app, tmp_path):
    app = make_app(persistence={"interval_seconds": 0.05})
    client = app.test_client()
    data = tmp_path / "data"
    data.rename(tmp_path / "moved")
    client.post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    eventually(lambda: client.get("/health").status_code == 503)
    health = client.get("/health").json
    assert health["status"] == "degraded" and "queues.pickle" in health["snapshot"]["last_error"]
    assert client.post("/queues/jobs/push", json={"message": {}}, headers=basic("admin")).status_code == 201
    (tmp_path / "moved").rename(data)
    eventually(lambda: client.get("/health").status_code == 200)
    assert client.get("/health").json["status"] == "ok"


def test_unchanged_state_is_not_written_again(make_app, tmp_path):
    app = make_app()
    snapshotter = app.extensions["queues.backend"].snapshotter
    app.test_client().post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    assert snapshotter.save() is True
    assert snapshotter.save() is False
    app.test_client().post("/queues/jobs/push", json={"message": {}}, headers=basic("admin"))
    assert snapshotter.save() is True


def test_unreadable_snapshot_stops_start_up_and_is_kept(tmp_path):
    config = load_config(write_config(tmp_path))
    config.persistence.path.parent.mkdir(parents=True)
    config.persistence.path.write_bytes(b"not a pickle at all")
    with pytest.raises(SnapshotError, match="queues.pickle"):
        create_app(config)
    assert config.persistence.path.read_bytes() == b"not a pickle at all"


def test_changes_after_shutdown_are_refused_with_503(make_app):
    app = make_app()
    client = app.test_client()
    client.post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    app.extensions["queues.backend"].queues.close()
    response = client.post("/queues/jobs/push", json={"message": {}}, headers=basic("admin"))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "storage_unavailable"
