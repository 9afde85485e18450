"""Storage faults on a live server: a missing or read-only data directory, a full disk, a file size
limit. The service refuses what it cannot make durable, says so on /health, keeps the last good
snapshot, and recovers by itself when the fault clears."""

import concurrent.futures
import errno
import os
import resource
import shutil
import subprocess
import time

import pytest

from tests.conftest import eventually
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow


def push(server, n):
    return server.session().post(server.url("/queues/jobs/push"), json={"message": {"n": n}})


def health(server):
    return server.session().get(server.url("/health"))


def assert_survives_a_crash(server, numbers):
    """kill -9, restart: the queue holds exactly numbers, in order."""
    server.kill9()
    server.start()
    assert pulled_numbers(server) == numbers


def pulled_numbers(server):
    response = server.session().post(server.url("/queues/jobs/pull?max=100"))
    return [m["message"]["n"] for m in response.json()["messages"]] if response.status_code == 200 else []


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs mounted for the test (the data directory), unmounted afterwards."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], check=False
    )
    if mounted.returncode != 0:
        pytest.skip("this machine does not let the tests mount a tmpfs (needs root)")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(path):
    """Write zeros to path until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def ext4(tmp_path):
    """A small ext4 file system in a file, loop-mounted for the test (fsfreeze needs a real one)."""
    image, mount_point = tmp_path / "disk.img", tmp_path / "ext4"
    mount_point.mkdir()
    image.write_bytes(b"")
    os.truncate(image, 64 * 2**20)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, check=False)
    mount = ["mount", "-o", "loop", str(image), str(mount_point)]
    if made.returncode != 0 or subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip("this machine does not let the tests mount an ext4 image (needs root and mkfs.ext4)")
    yield mount_point
    subprocess.run(["fsfreeze", "-u", str(mount_point)], capture_output=True, check=False)
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fsfreeze(mount_point, on):
    subprocess.run(["fsfreeze", "-f" if on else "-u", str(mount_point)], check=True)


def start(tmp_path, data_dir, journal):
    server = LiveServer(
        tmp_path / "server",
        persistence={"path": str(data_dir / "queues.pickle"), "interval_seconds": 0.2, "journal": journal},
    )
    server.start()
    assert server.session().post(server.url("/queues"), json={"name": "jobs"}).status_code == 201
    return server


@pytest.mark.parametrize("journal", ["off", "on"])
def test_missing_data_directory_degrades_then_recovers(tmp_path, journal):
    data = tmp_path / "data"
    server = start(tmp_path, data, journal)
    try:
        assert push(server, 1).status_code == 201
        eventually(lambda: (data / "queues.pickle").exists() and health(server).status_code == 200)
        data.rename(tmp_path / "moved")
        accepted = []  # pushes of 2 that got their 201: they must all survive
        if journal == "on":
            # The journal notices within a second that its file is gone, and then refuses changes.
            def refused():
                status = push(server, 2).status_code
                accepted.extend([2] if status == 201 else [])
                return status == 503

            eventually(refused)
        else:
            assert push(server, 2).status_code == 201  # without a journal, changes go on in memory
            accepted.append(2)
        eventually(lambda: health(server).status_code == 503)
        body = health(server).json()
        assert body["status"] == "degraded"
        assert "queues.pickle" in (body["snapshot"]["last_error"] or body["journal"]["last_error"])
        data.mkdir()
        eventually(lambda: health(server).status_code == 200)
        assert push(server, 3).status_code == 201
        expected = [1, *accepted, 3]
        eventually(lambda: (data / "queues.pickle").exists())
        assert server.stop() == 0
        server.start()
        assert pulled_numbers(server) == expected
    finally:
        server.stop()


def set_immutable(directory, on):
    """chattr +i (or -i) the directory and its files: nothing in it can be written, created or
    replaced, as on a read-only file system (a remount would be refused while files are open)."""
    paths = [str(directory), *map(str, directory.iterdir())]
    result = subprocess.run(["chattr", "+i" if on else "-i", *paths], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"chattr is not available here: {result.stderr.decode().strip()}")


def test_read_only_data_directory_refuses_changes_and_keeps_the_snapshot(tmp_path):
    data = tmp_path / "data"
    server = start(tmp_path, data, "on")
    try:
        assert push(server, 1).status_code == 201
        eventually(lambda: (data / "queues.pickle").exists())
        time.sleep(0.5)  # a snapshot of the push is on disk
        snapshot = (data / "queues.pickle").read_bytes()
        set_immutable(data, True)
        try:
            refused = push(server, 2)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
            eventually(lambda: health(server).status_code == 503)
            assert (data / "queues.pickle").read_bytes() == snapshot
        finally:
            set_immutable(data, False)
        eventually(lambda: push(server, 3).status_code == 201)
        eventually(lambda: health(server).status_code == 200)
        assert_survives_a_crash(server, [1, 3])
    finally:
        server.stop()


def test_full_disk_refuses_changes_then_recovers_when_space_returns(tmp_path, tmpfs):
    server = start(tmp_path, tmpfs, "on")
    try:
        assert push(server, 1).status_code == 201
        filler = tmpfs / "filler"
        fill_disk(filler)
        big = {"message": {"n": 2, "pad": "x" * 200_000}}
        refused = server.session().post(server.url("/queues/jobs/push"), json=big)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
        eventually(lambda: health(server).status_code == 503)
        filler.unlink()
        eventually(lambda: push(server, 3).status_code == 201)
        eventually(lambda: health(server).status_code == 200)
        assert_survives_a_crash(server, [1, 3])
    finally:
        server.stop()


def test_file_size_limit_refuses_changes_then_recovers_when_lifted(tmp_path):
    server = start(tmp_path, tmp_path / "data", "on")
    try:
        assert push(server, 1).status_code == 201
        (worker,) = server.worker_pids()
        journal = max((tmp_path / "data").glob("queues.pickle.journal.*"))
        limit = journal.stat().st_size + 100
        # Only the soft limit: raising a hard limit again may need a privilege the tests lack.
        unlimited = resource.RLIM_INFINITY
        resource.prlimit(worker, resource.RLIMIT_FSIZE, (limit, unlimited))
        big = {"message": {"n": 2, "pad": "x" * 1000}}
        refused = server.session().post(server.url("/queues/jobs/push"), json=big)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
        assert server.process.poll() is None, "the service died of SIGXFSZ"
        resource.prlimit(worker, resource.RLIMIT_FSIZE, (unlimited, unlimited))
        eventually(lambda: push(server, 3).status_code == 201)
        eventually(lambda: health(server).status_code == 200)
        assert_survives_a_crash(server, [1, 3])
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)


def test_a_push_stalled_by_a_frozen_disk_gets_its_201_after_the_thaw_and_survives_a_crash(tmp_path, ext4):
    # The journal's write() keeps the GIL: a stall freezes the worker, but must lose or refuse nothing.
    server = start(tmp_path, ext4, "on")
    try:
        assert push(server, 1).status_code == 201
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fsfreeze(ext4, True)
            try:
                stalled = pool.submit(push, server, 2)
                time.sleep(2)
                assert not stalled.done(), "the push did not wait for the frozen disk"
            finally:
                fsfreeze(ext4, False)
            assert stalled.result(timeout=30).status_code == 201
        eventually(lambda: health(server).status_code == 200)
        assert_survives_a_crash(server, [1, 2])
    finally:
        server.stop()
