"""The snapshot file: round trip, atomic replacement, and refusal of anything but plain data."""

import os
import pickle

import pytest

from queues.fifo import Queue
from queues.memory.manager import SNAPSHOT_VERSION, MemoryQueueManager
from storage import snapshot as snapshot_module
from storage.snapshot import SnapshotError, load_snapshot, save_snapshot


def state_with(messages_per_queue):
    qm = MemoryQueueManager()
    for name, count in messages_per_queue.items():
        qm.create(name, max(count, 1), schema="job" if name == "jobs" else None)
        for start in range(0, count, 1000):
            qm.push(name, [b'{"n":%d}' % n for n in range(start, min(count, start + 1000))])
    return qm.snapshot()[0]


def test_round_trip_keeps_every_queue_setting_and_message_in_order(tmp_path):
    state = state_with({"jobs": 25_001, "results": 3, "empty": 0})
    save_snapshot(tmp_path / "s.pickle", state)
    assert load_snapshot(tmp_path / "s.pickle", SNAPSHOT_VERSION, Queue.check_settings) == state


def test_missing_file_loads_as_none(tmp_path):
    assert load_snapshot(tmp_path / "none.pickle", SNAPSHOT_VERSION, Queue.check_settings) is None


def test_failed_write_leaves_the_previous_snapshot_whole(tmp_path, monkeypatch):
    path = tmp_path / "s.pickle"
    save_snapshot(path, state_with({"q": 5}))
    before = path.read_bytes()

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot_module.os, "fsync", fail)
    with pytest.raises(SnapshotError, match="No space left"):
        save_snapshot(path, state_with({"q": 9, "r": 1}))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.pickle"]


def test_write_into_a_missing_directory_raises_snapshot_error_naming_the_file(tmp_path):
    with pytest.raises(SnapshotError, match="gone/s.pickle"):
        save_snapshot(tmp_path / "gone" / "s.pickle", state_with({"q": 1}))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_that_names_a_callable_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"version": 1, "next_id": 1, "queues": [], "x": _Exploit()}))
    with pytest.raises(SnapshotError, match="evil.pickle"):
        load_snapshot(path, SNAPSHOT_VERSION, Queue.check_settings)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: b"garbage" + data,
        lambda data: data + b"trailing",
        lambda data: b"",
    ],
    ids=["truncated", "garbage-before", "trailing-data", "empty"],
)
def test_damaged_file_raises_snapshot_error_and_is_left_alone(tmp_path, damage):
    path = tmp_path / "s.pickle"
    save_snapshot(path, state_with({"q": 20_000}))
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)
    with pytest.raises(SnapshotError, match="s.pickle"):
        load_snapshot(path, SNAPSHOT_VERSION, Queue.check_settings)
    assert path.read_bytes() == damaged


@pytest.mark.parametrize(
    "header",
    [
        [],
        {"version": 1, "queues": []},
        {"version": 99, "next_id": 1, "queues": []},
        {"version": 1, "next_id": 1, "queues": [{"name": "q"}]},
    ],
)
def test_file_with_the_wrong_shape_is_refused(tmp_path, header):
    path = tmp_path / "s.pickle"
    path.write_bytes(pickle.dumps(header))
    with pytest.raises(SnapshotError):
        load_snapshot(path, SNAPSHOT_VERSION, Queue.check_settings)


def test_unreadable_path_raises_snapshot_error(tmp_path):
    (tmp_path / "dir.pickle").mkdir()
    with pytest.raises(SnapshotError, match="dir.pickle"):
        load_snapshot(tmp_path / "dir.pickle", SNAPSHOT_VERSION, Queue.check_settings)
