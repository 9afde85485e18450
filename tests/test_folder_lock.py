"""One process at a time in a data folder: a second waits for the first, then starts from its state."""

import subprocess
import sys
import textwrap
import time

import pytest
import requests

from storage import folder_lock
from storage.folder_lock import DataFolderBusy, FolderLock
from tests.conftest import REPO
from tests.live_server import LiveServer

HOLD = textwrap.dedent(
    """
    import sys, time
    from storage.folder_lock import FolderLock
    FolderLock(sys.argv[1])
    print("held", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def held_by_another_process(tmp_path):
    """A process holding the lock of tmp_path/queues.pickle's folder until the test kills it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "queues.pickle")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "held\n"
    yield holder
    holder.kill()
    holder.wait(10)
    holder.stdout.close()


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


@pytest.mark.slow
def test_a_second_server_on_one_data_folder_waits_then_starts_from_what_the_first_left(tmp_path):
    persistence = {"path": str(tmp_path / "data" / "queues.pickle"), "journal": "on"}
    first = LiveServer(tmp_path / "first", persistence=persistence).start()
    second = LiveServer(tmp_path / "second", persistence=persistence)
    try:
        session = first.session()
        assert session.post(first.url("/queues"), json={"name": "jobs"}).status_code == 201
        assert session.post(first.url("/queues/jobs/push"), json={"message": {"n": 1}}).status_code == 201
        second.start(wait=False)
        time.sleep(3)  # long enough for its worker to start, were the folder free
        with pytest.raises(requests.RequestException):
            requests.get(second.url("/health"), timeout=1)
        assert session.post(first.url("/queues/jobs/push"), json={"message": {"n": 2}}).status_code == 201
        assert first.stop() == 0  # writes its final snapshot, then lets the second in
        second.wait_healthy()
        pulled = second.session().post(second.url("/queues/jobs/pull?max=5")).json()["messages"]
        assert [m["message"]["n"] for m in pulled] == [1, 2]
    finally:
        first.stop()
        second.stop()
