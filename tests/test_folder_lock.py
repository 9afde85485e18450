"""One process at a time in a data folder: a second waits for the first, then starts from its state."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from app import create_app, shutdown
from queues.config import load_config
from storage import folder_lock
from storage.folder_lock import DataFolderBusy, FolderLock
from tests.conftest import REPO, basic, eventually, write_config
from tests.live_server import LiveServer
from tests.test_faults import set_immutable

HOLD = textwrap.dedent(
    """
    import sys, time
    from storage.folder_lock import FolderLock
    FolderLock(sys.argv[1])
    print("held", flush=True)
    time.sleep(60)
    """
)


@contextlib.contextmanager
def held_elsewhere(snapshot_path):
    """A process holding the lock of snapshot_path's folder until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(snapshot_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()


@pytest.fixture
def held_by_another_process(tmp_path):
    """A process holding the lock of tmp_path/queues.pickle's folder until the test kills it."""
    with held_elsewhere(tmp_path / "queues.pickle") as holder:
        yield holder


def test_a_folder_held_by_another_process_is_refused_after_the_wait_naming_the_lock(
    tmp_path, held_by_another_process, monkeypatch
):
    monkeypatch.setattr(folder_lock, "WAIT_SECONDS", 0.3)
    with pytest.raises(DataFolderBusy, match=r"queues\.pickle\.lock: another process"):
        FolderLock(tmp_path / "queues.pickle")


def test_the_lock_ends_with_its_process_even_after_kill_9(tmp_path, held_by_another_process, monkeypatch):
    monkeypatch.setattr(folder_lock, "WAIT_SECONDS", 10)
    held_by_another_process.kill()
    FolderLock(tmp_path / "queues.pickle").release()


def test_a_read_only_data_folder_without_a_journal_still_starts_from_its_snapshot(make_app, tmp_path):
    """As before the lock: such a service serves its snapshot, and writes again once it can."""
    persistence = {"journal": "off", "interval_seconds": 3600}
    first = create_app(load_config(write_config(tmp_path, persistence=persistence)))
    first.test_client().post("/queues", json={"name": "jobs"}, headers=basic("admin"))
    first.test_client().post("/queues/jobs/push", json={"message": {"n": 1}}, headers=basic("admin"))
    shutdown(first)
    data = tmp_path / "data"
    set_immutable(data, True)
    try:
        app = make_app(persistence=persistence)
        pulled = app.test_client().post("/queues/jobs/pull?max=5", headers=basic("admin"))
        assert pulled.status_code == 200, pulled.json
        assert [m["message"]["n"] for m in pulled.json["messages"]] == [1]
        assert app.extensions["queues.backend"].snapshotter.save() is False
    finally:
        set_immutable(data, False)
    assert app.extensions["queues.backend"].snapshotter.save() is True  # taking the lock first
    assert (data / "queues.pickle.lock").exists()


def test_a_lock_file_that_cannot_be_opened_in_a_writable_folder_refuses_the_start(tmp_path):
    """Running unlocked there would let a second process in beside this one (as root, chmod 000
    does not keep anyone out: an immutable lock file stands in for one nobody may open)."""
    FolderLock(tmp_path / "queues.pickle").release()
    lock_file = tmp_path / "queues.pickle.lock"
    if subprocess.run(["chattr", "+i", str(lock_file)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr is not available here")
    try:
        with pytest.raises(PermissionError, match=r"queues\.pickle\.lock"):
            FolderLock(tmp_path / "queues.pickle")
    finally:
        subprocess.run(["chattr", "-i", str(lock_file)], check=True)


def first_with_message_1_and_a_second(tmp_path, **persistence):
    """(a started server holding jobs: [1], a second not started) on one data folder, tmp_path/data."""
    persistence = {"path": str(tmp_path / "data" / "queues.pickle"), "journal": "on", **persistence}
    first = LiveServer(tmp_path / "first", persistence=persistence).start()
    session = first.session()
    assert session.post(first.url("/queues"), json={"name": "jobs"}).status_code == 201
    assert session.post(first.url("/queues/jobs/push"), json={"message": {"n": 1}}).status_code == 201
    return first, LiveServer(tmp_path / "second", persistence=persistence)


def assert_second_waits_then_starts_from_what_the_first_left(first, second):
    second.start(wait=False)
    time.sleep(3)  # long enough for its worker to start, were the folder free
    with pytest.raises(requests.RequestException):
        requests.get(second.url("/health"), timeout=1)
    assert first.session().post(first.url("/queues/jobs/push"), json={"message": {"n": 2}}).status_code == 201
    assert first.stop() == 0  # writes its final snapshot, then lets the second in
    second.wait_healthy()
    pulled = second.session().post(second.url("/queues/jobs/pull?max=5")).json()["messages"]
    assert [m["message"]["n"] for m in pulled] == [1, 2]


@pytest.mark.slow
def test_a_second_server_on_one_data_folder_waits_then_starts_from_what_the_first_left(tmp_path):
    first, second = first_with_message_1_and_a_second(tmp_path)
    try:
        assert_second_waits_then_starts_from_what_the_first_left(first, second)
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["lock file deleted", "folder renamed away and made again"])
def test_a_server_whose_lock_file_was_taken_away_takes_it_again_so_a_second_still_waits(tmp_path, how):
    first, second = first_with_message_1_and_a_second(tmp_path, interval_seconds=0.2)
    data = tmp_path / "data"
    try:
        if how == "lock file deleted":
            (data / "queues.pickle.lock").unlink()
        else:
            data.rename(tmp_path / "moved")
            data.mkdir()
        time.sleep(1)  # a few snapshot intervals of the first, which writes its state to the new folder
        assert_second_waits_then_starts_from_what_the_first_left(first, second)
    finally:
        first.stop()
        second.stop()


def test_a_server_whose_folder_another_process_took_refuses_changes_and_never_overwrites_its_snapshot(
    make_app, tmp_path
):
    app = make_app(persistence={"interval_seconds": 3600})
    client, snapshotter = app.test_client(), app.extensions["queues.backend"].snapshotter
    snapshot = tmp_path / "data" / "queues.pickle"
    assert client.post("/queues", json={"name": "jobs"}, headers=basic("admin")).status_code == 201
    assert snapshotter.save() is True
    (tmp_path / "data" / "queues.pickle.lock").unlink()
    with held_elsewhere(snapshot):
        written = snapshot.read_bytes()
        assert (
            client.post("/queues/jobs/push", json={"message": {}}, headers=basic("admin")).status_code == 201
        )
        assert snapshotter.save() is False
        refused = client.post("/queues/jobs/push", json={"message": {}}, headers=basic("admin"))
        assert refused.status_code == 503 and "another process" in refused.json["error"]["message"]
        health = client.get("/health")
        assert health.status_code == 503 and "another process" in health.json["snapshot"]["last_error"]
    assert snapshotter.save() is False  # the folder stays the other one's, even once it let go
    assert snapshot.read_bytes() == written


@pytest.mark.slow
def test_a_stop_while_waiting_for_the_folder_ends_the_wait_and_exits_cleanly(tmp_path):
    first, second = first_with_message_1_and_a_second(tmp_path)
    try:
        second.start(wait=False)
        time.sleep(2)  # its worker is waiting for the lock
        assert second.stop() == 0
        assert "Traceback" not in second.stderr()
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
def test_a_reload_under_load_hands_every_acknowledged_push_to_the_new_worker_once(tmp_path):
    """kill -HUP while pushes go on: gunicorn starts the new worker as it stops the old one, which
    writes its final snapshot while the new one waits for the data folder."""
    persistence = {"path": str(tmp_path / "data" / "queues.pickle"), "journal": "on"}
    server = LiveServer(tmp_path / "server", persistence=persistence).start()
    acked, unsure = [], []  # pushes that got their 201; pushes whose reply was lost

    def produce(producer):
        session = server.session()
        for n in range(producer * 1000, producer * 1000 + 300):
            try:
                response = session.post(
                    server.url("/queues/jobs/push"), json={"message": {"n": n}}, timeout=30
                )
                (acked if response.status_code == 201 else unsure).append(n)
            except requests.RequestException:
                unsure.append(n)

    try:
        assert server.session().post(server.url("/queues"), json={"name": "jobs"}).status_code == 201
        old_worker = server.worker_pids()
        producers = [threading.Thread(target=produce, args=(p,)) for p in range(3)]
        for producer in producers:
            producer.start()
        eventually(lambda: len(acked) >= 100)
        os.kill(server.process.pid, signal.SIGHUP)
        for producer in producers:
            producer.join()
        eventually(lambda: server.worker_pids() not in ([], old_worker))
        pulled, session = [], server.session()
        while (response := session.post(server.url("/queues/jobs/pull?max=100"))).status_code == 200:
            pulled += [m["message"]["n"] for m in response.json()["messages"]]
        assert response.status_code == 204  # nothing left
        assert len(pulled) == len(set(pulled))  # none twice
        assert set(acked) <= set(pulled) <= set(acked) | set(unsure)  # none lost, none made up
    finally:
        server.stop()
