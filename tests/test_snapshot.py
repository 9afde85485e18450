"""The snapshot file: round trip, atomic replacement, and refusal of anything but plain data."""

import os
import pickle

import pytest

from queues.config import PersistenceConfig
from queues.fifo import Queue
from queues.memory.manager import SNAPSHOT_VERSION, MemoryQueueManager
from queues.memory.recovery import recover
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


def test_a_flipped_bit_inside_a_message_is_refused_by_the_checksum(tmp_path):
    path = tmp_path / "s.pickle"
    qm = MemoryQueueManager()
    qm.create("q", 10)
    qm.push("q", [b'{"amount":"1000"}'])
    save_snapshot(path, qm.snapshot()[0])
    data = path.read_bytes()
    damaged = data.replace(b'"1000"', b'"9000"')
    assert damaged != data
    path.write_bytes(damaged)
    with pytest.raises(SnapshotError, match="s.pickle.*checksum"):
        load_snapshot(path, SNAPSHOT_VERSION, Queue.check_settings)
    assert path.read_bytes() == damaged


def test_a_snapshot_from_before_checksums_loads_with_a_warning(tmp_path, caplog):
    path = tmp_path / "s.pickle"
    state = state_with({"q": 3})
    header = dict(state, queues=[])
    for saved in state["queues"]:
        header["queues"].append(dict({k: v for k, v in saved.items() if k != "messages"}, size=3))
    path.write_bytes(pickle.dumps(header) + pickle.dumps(state["queues"][0]["messages"]))
    assert load_snapshot(path, SNAPSHOT_VERSION, Queue.check_settings) == state
    assert "before snapshots had a checksum" in caplog.text


def bad_content(change):
    """A snapshot state of two queues (one the other's dead-letter queue), with change applied."""
    qm = MemoryQueueManager()
    qm.create("dead", 10)
    qm.create("jobs", 10, max_deliveries=3, dead_letter_queue="dead")
    qm.push("jobs", [b'{"n":1}'])
    state = qm.snapshot()[0]
    change({saved["name"]: saved for saved in state["queues"]})
    return state


CONTENT_DAMAGE = {
    "max_messages -5": (lambda q: q["jobs"].update(max_messages=-5), "max_messages -5"),
    "unknown schema": (lambda q: q["jobs"].update(schema="nosuch"), "unknown schema"),
    "missing dead-letter queue": (lambda q: q["jobs"].update(dead_letter_queue="gone"), "does not exist"),
    "message not JSON": (lambda q: q["jobs"]["messages"].append(q["jobs"]["messages"][0][:-1]), "not JSON"),
    "bad queue name": (lambda q: q["dead"].update(name="../x"), "queue name"),
}


@pytest.mark.parametrize("damage", CONTENT_DAMAGE, ids=list(CONTENT_DAMAGE))
def test_content_that_could_not_have_been_made_stops_recovery_naming_the_file(tmp_path, damage):
    change, problem = CONTENT_DAMAGE[damage]
    path = tmp_path / "s.pickle"
    save_snapshot(path, bad_content(change))
    data = path.read_bytes()
    with pytest.raises(SnapshotError, match=f"s.pickle.*{problem}") as refused:
        recover(PersistenceConfig(path=path), max_waiting=4)
    assert "\n" not in str(refused.value)
    assert path.read_bytes() == data


def test_content_as_the_api_makes_it_recovers(tmp_path):
    path = tmp_path / "s.pickle"
    save_snapshot(path, bad_content(lambda queues: None))
    manager, _ = recover(PersistenceConfig(path=path), max_waiting=4)
    assert {info["name"] for info in manager.list()} == {"dead", "jobs"}
    manager.close()
