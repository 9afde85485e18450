"""The journal: records survive a crash between snapshots, damage is caught, faults refuse changes."""

import errno
import os
import pickle

import pytest

from app import create_app, shutdown
from queues import message
from queues.config import load_config
from storage import journal as journal_module
from storage.journal import JournalError, encode, generations, journal_path, read_records
from tests.conftest import basic, write_config


def test_records_read_back_in_order(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"".join(encode(("push", "q", [b"x" * n])) for n in range(50)))
    assert [r[2][0] for r in read_records(path)] == [b"x" * n for n in range(50)]


@pytest.mark.parametrize("cut", [1, 5, 11, 12, 20])
def test_torn_last_record_is_dropped_with_a_warning(tmp_path, caplog, cut):
    path = tmp_path / "j"
    whole = encode(("push", "q", [b"first"]))
    path.write_bytes(whole + encode(("push", "q", [b"second" * 10]))[:-cut])
    assert read_records(path) == [("push", "q", [b"first"])]
    assert "torn last record" in caplog.text and f"offset {len(whole)}" in caplog.text


@pytest.mark.parametrize("kept", [0, 5, 20])
def test_a_zero_filled_tail_after_a_power_loss_is_dropped_like_a_torn_record(tmp_path, caplog, kept):
    # Some file systems show a file's new length before its data after a power loss: the bytes of
    # the records not yet synced read as zeros. No record ends in a zero byte (a pickle ends in ".").
    path = tmp_path / "j"
    whole = encode(("push", "q", [b"first"]))
    path.write_bytes(whole + encode(("push", "q", [b"second" * 10]))[:kept] + bytes(4096))
    assert read_records(path) == [("push", "q", [b"first"])]
    assert "torn last record" in caplog.text and f"offset {len(whole)}" in caplog.text


def test_damage_before_the_last_record_stops_with_file_and_offset(tmp_path):
    path = tmp_path / "j"
    first, second = encode(("push", "q", [b"first"])), encode(("push", "q", [b"second"]))
    damaged = bytearray(first + second)
    damaged[len(first) - 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(JournalError, match=rf"{path}: damaged record at offset 0"):
        read_records(path)


def test_damaged_header_stops_start_up(tmp_path):
    path = tmp_path / "j"
    record = bytearray(encode(("take", "q", 1)) * 3)
    record[len(record) // 3 + 1] ^= 0xFF
    path.write_bytes(bytes(record))
    with pytest.raises(JournalError, match="damaged record header at offset"):
        read_records(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_record_naming_a_callable_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps(("push", "q", _Exploit()))
    header = journal_module._HEADER.pack(len(payload), journal_module.zlib.crc32(payload))
    check = journal_module._HEADER_CHECK.pack(journal_module.zlib.crc32(header))
    (tmp_path / "j").write_bytes(header + check + payload)
    with pytest.raises(JournalError, match="unreadable record"):
        read_records(tmp_path / "j")
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def journaled(tmp_path):
    """A function that builds an app with the journal on; every app is shut down after the test."""
    apps = []

    def make(fsync="always"):
        config = load_config(write_config(tmp_path, persistence={"journal": "on", "fsync": fsync}))
        apps.append(create_app(config))
        return apps[-1]

    yield make
    for app in apps:
        shutdown(app)


def act(app, method, path, **kwargs):
    return getattr(app.test_client(), method)(path, headers=basic("admin"), **kwargs)


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_changes_since_the_last_snapshot_are_replayed_after_a_crash(journaled, fsync):
    crashed = journaled(fsync)  # no snapshot is written before the "crash": only the journal has it
    act(crashed, "post", "/queues", json={"name": "dead"})
    act(crashed, "post", "/queues", json={"name": "jobs", "max_deliveries": 2, "dead_letter_queue": "dead"})
    act(crashed, "post", "/queues", json={"name": "gone"})
    act(crashed, "delete", "/queues/gone")
    act(crashed, "post", "/queues/jobs/push", json={"messages": [{"n": n} for n in range(6)]})
    act(crashed, "post", "/queues/jobs/pull")  # n=0 taken for good
    leased = act(crashed, "post", "/queues/jobs/pull?lease=60&max=3").json["messages"]  # n=1..3
    act(crashed, "post", "/queues/jobs/ack", json={"receipt": leased[0]["receipt"]})  # n=1 done
    act(crashed, "post", "/queues/jobs/nack", json={"receipt": leased[1]["receipt"]})  # n=2 back
    before = act(crashed, "get", "/queues").json

    recovered = journaled(fsync)
    after = act(recovered, "get", "/queues").json
    jobs_before = next(q for q in before["queues"] if q["name"] == "jobs")
    jobs_after = next(q for q in after["queues"] if q["name"] == "jobs")
    assert [q["name"] for q in after["queues"]] == ["dead", "jobs"]
    assert jobs_after["in_flight"] == 0 and jobs_after["size"] == jobs_before["size"] == 4
    for counter in ("pushed_total", "pulled_total", "acked_total", "created_at"):
        assert jobs_after[counter] == jobs_before[counter]
    pulled = act(recovered, "post", "/queues/jobs/pull?lease=60&max=10").json["messages"]
    # n=3 was in flight at the crash: its lease ended at the restart, which put it back at the head.
    assert [(m["message"]["n"], m["deliveries"]) for m in pulled] == [(3, 2), (2, 2), (4, 1), (5, 1)]


def test_a_lease_taken_after_a_restart_replays_after_the_next_crash(journaled):
    first = journaled()
    act(first, "post", "/queues", json={"name": "jobs"})
    act(first, "post", "/queues/jobs/push", json={"messages": [{"n": 1}, {"n": 2}]})
    act(first, "post", "/queues/jobs/pull?lease=60")  # n=1 in flight at the first crash

    second = journaled()  # ends n=1's lease; only the journal records that
    taken = act(second, "post", "/queues/jobs/pull?lease=60").json
    assert (taken["message"]["n"], taken["deliveries"]) == (1, 2)

    third = journaled()
    assert act(third, "get", "/queues/jobs").json["size"] == 2
    pulled = act(third, "post", "/queues/jobs/pull?lease=60&max=5").json["messages"]
    assert [(m["message"]["n"], m["deliveries"]) for m in pulled] == [(1, 3), (2, 1)]


def test_snapshot_folds_the_journal_in_and_starts_a_new_generation(journaled, tmp_path):
    app = journaled()
    act(app, "post", "/queues", json={"name": "jobs"})
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 1}})
    snapshot_path = tmp_path / "data" / "queues.pickle"
    first = generations(snapshot_path)
    assert app.extensions["queues.backend"].snapshotter.save() is True
    assert generations(snapshot_path) == [first[-1] + 1]
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 2}})
    recovered = journaled()
    pulled = act(recovered, "post", "/queues/jobs/pull?max=5").json["messages"]
    assert [m["message"] for m in pulled] == [{"n": 1}, {"n": 2}]


def test_a_failed_snapshot_keeps_every_generation_it_did_not_fold_in(journaled, tmp_path, monkeypatch):
    from queues.memory import snapshotter as snapshotter_module
    from storage.snapshot import SnapshotError

    app = journaled()
    act(app, "post", "/queues", json={"name": "jobs"})
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 1}})

    def fail(path, state):
        raise SnapshotError("disk on fire")

    monkeypatch.setattr(snapshotter_module, "save_snapshot", fail)
    assert app.extensions["queues.backend"].snapshotter.save() is False
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 2}})
    assert len(generations(tmp_path / "data" / "queues.pickle")) == 2
    monkeypatch.undo()
    recovered = journaled()
    assert [
        m["message"]["n"] for m in act(recovered, "post", "/queues/jobs/pull?max=5").json["messages"]
    ] == [1, 2]


def test_change_that_cannot_be_journaled_is_refused_and_not_applied(journaled, monkeypatch):
    app = journaled()
    act(app, "post", "/queues", json={"name": "jobs"})
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 1}})
    real_write = journal_module.write_all

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "write_all", full_disk)
    for method, path, body in [
        ("post", "/queues/jobs/push", {"message": {"n": 2}}),
        ("post", "/queues/jobs/pull", None),
        ("post", "/queues", {"name": "other"}),
        ("delete", "/queues/jobs", None),
    ]:
        response = act(app, method, path, json=body)
        assert response.status_code == 503 and response.json["error"]["code"] == "storage_unavailable"
    health = app.test_client().get("/health")
    assert health.status_code == 503 and "No space left" in health.json["journal"]["last_error"]
    info = act(app, "get", "/queues/jobs").json
    assert (info["size"], info["pushed_total"], info["pulled_total"]) == (1, 1, 0)

    monkeypatch.setattr(journal_module, "write_all", real_write)
    assert act(app, "post", "/queues/jobs/push", json={"message": {"n": 3}}).status_code == 201
    assert app.test_client().get("/health").status_code == 200
    recovered = journaled()
    assert [
        m["message"]["n"] for m in act(recovered, "post", "/queues/jobs/pull?max=5").json["messages"]
    ] == [1, 3]


def test_partial_write_is_cut_off_before_the_next_record(journaled, tmp_path, monkeypatch):
    app = journaled()
    act(app, "post", "/queues", json={"name": "jobs"})
    real_write = journal_module.write_all

    def half_then_fail(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "write_all", half_then_fail)
    assert act(app, "post", "/queues/jobs/push", json={"message": {"lost": True}}).status_code == 503
    monkeypatch.setattr(journal_module, "write_all", real_write)
    assert act(app, "post", "/queues/jobs/push", json={"message": {"kept": True}}).status_code == 201
    records = read_records(journal_path(tmp_path / "data" / "queues.pickle", 0))
    assert [r[0] for r in records] == ["create", "push"]


def test_fsync_always_syncs_before_the_reply(journaled, monkeypatch):
    app = journaled("always")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(journal_module.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    act(app, "post", "/queues", json={"name": "jobs"})
    act(app, "post", "/queues/jobs/push", json={"message": {}})
    assert len(synced) == 2


def test_with_the_journal_off_old_journal_files_are_folded_in_then_removed(tmp_path):
    config_on = load_config(write_config(tmp_path, persistence={"journal": "on"}))
    crashed = create_app(config_on)
    act(crashed, "post", "/queues", json={"name": "jobs"})
    config_off = load_config(write_config(tmp_path, persistence={"journal": "off"}))
    app = create_app(config_off)
    try:
        assert act(app, "get", "/queues/jobs").status_code == 200
        assert app.extensions["queues.backend"].snapshotter.save() is True
        assert generations(tmp_path / "data" / "queues.pickle") == []
    finally:
        shutdown(app)
        shutdown(crashed)


def test_removed_journal_file_refuses_changes_until_a_snapshot_starts_a_new_one(journaled, tmp_path):
    app = journaled("no")
    act(app, "post", "/queues", json={"name": "jobs"})
    data = tmp_path / "data"
    data.rename(tmp_path / "elsewhere")
    with pytest.raises(journal_module.JournalWriteError):
        app.extensions["queues.backend"].journal._check_file()  # what its thread does every second
    response = act(app, "post", "/queues/jobs/push", json={"message": {"n": 1}})
    assert response.status_code == 503 and "was removed" in response.json["error"]["message"]
    assert app.extensions["queues.backend"].snapshotter.save() is False
    data.mkdir()
    assert app.extensions["queues.backend"].snapshotter.save() is True
    assert act(app, "post", "/queues/jobs/push", json={"message": {"n": 2}}).status_code == 201
    assert app.test_client().get("/health").status_code == 200
    recovered = journaled("no")
    pulled = act(recovered, "post", "/queues/jobs/pull?max=5").json["messages"]
    assert [m["message"]["n"] for m in pulled] == [2]


def test_a_record_written_just_before_a_new_generation_is_synced_in_its_own_file(tmp_path, monkeypatch):
    journal = journal_module.Journal(tmp_path / "queues.pickle", 0, "always")
    sequence = journal.append(encode(("take", "q", 1)))  # its writer has not waited for fsync yet
    first_file = journal._fd
    journal.switch(journal.open_next())  # a snapshot starts generation 1 before that writer syncs
    synced = []
    monkeypatch.setattr(journal_module.os, "fsync", synced.append)
    journal.wait_durable(sequence)
    assert first_file in synced
    monkeypatch.undo()
    journal.close()
    assert generations(tmp_path / "queues.pickle") == [0, 1]


def test_a_snapshot_restored_from_a_backup_with_later_journals_stops_start_up(journaled, tmp_path):
    app = journaled()
    act(app, "post", "/queues", json={"name": "jobs"})
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 1}})
    snapshot_path = tmp_path / "data" / "queues.pickle"
    app.extensions["queues.backend"].snapshotter.save()
    backup = snapshot_path.read_bytes()
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 2}})  # only in the journal it holds...
    app.extensions["queues.backend"].snapshotter.save()  # ...until this snapshot folds it in
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 3}})
    snapshot_path.write_bytes(backup)  # the operator puts the older snapshot back
    # Replaying the newer journal onto it would silently lose n=2.
    missing = journal_path(snapshot_path, generations(snapshot_path)[0] - 1)
    with pytest.raises(JournalError, match=rf"{missing} is missing"):
        journaled()


def test_journal_files_without_the_snapshot_they_continue_stop_start_up(journaled, tmp_path):
    app = journaled()
    act(app, "post", "/queues", json={"name": "jobs"})
    app.extensions["queues.backend"].snapshotter.save()
    act(app, "post", "/queues/jobs/push", json={"message": {"n": 1}})
    snapshot_path = tmp_path / "data" / "queues.pickle"
    snapshot_path.unlink()
    with pytest.raises(JournalError, match=rf"{journal_path(snapshot_path, 0)} is missing"):
        journaled()


def test_a_record_that_does_not_apply_stops_start_up_naming_the_journal(journaled, tmp_path):
    snapshot_path = tmp_path / "data" / "queues.pickle"
    snapshot_path.parent.mkdir()
    journal_path(snapshot_path, 0).write_bytes(encode(("push", "ghost", [message.pack(1, 0.0, b"{}")])))
    with pytest.raises(JournalError, match=rf"{snapshot_path}.*push to 'ghost'"):
        journaled()


def failing_fsync_of(monkeypatch, doomed):
    """Make fsync fail with EIO once for each fd in doomed, as a disk error would."""
    real_fsync = os.fsync

    def fsync(fd):
        if fd in doomed:
            doomed.remove(fd)
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)


def test_a_record_in_a_file_whose_fsync_failed_at_a_new_generation_is_not_reported_durable(
    tmp_path, monkeypatch
):
    journal = journal_module.Journal(tmp_path / "queues.pickle", 0, "always")
    sequence = journal.append(encode(("take", "q", 1)))  # its writer has not waited for fsync yet
    failing_fsync_of(monkeypatch, [journal._fd])
    journal.switch(journal.open_next())
    with pytest.raises(journal_module.JournalWriteError):
        journal.retire()  # the snapshot's sync of the previous file fails
    with pytest.raises(journal_module.JournalWriteError):
        journal.wait_durable(sequence)
    journal.close()


def test_a_record_written_before_a_failed_fsync_is_not_reported_durable_by_a_later_one(tmp_path, monkeypatch):
    journal = journal_module.Journal(tmp_path / "queues.pickle", 0, "always")
    first, second = journal.append(encode(("take", "q", 1))), journal.append(encode(("take", "q", 2)))
    failing_fsync_of(monkeypatch, [journal._fd])
    with pytest.raises(journal_module.JournalWriteError):
        journal.wait_durable(first)
    # After a failed fsync the kernel may have dropped the dirty pages: a retry that succeeds
    # proves nothing about the records written before it.
    with pytest.raises(journal_module.JournalWriteError):
        journal.wait_durable(second)
    third = journal.append(encode(("take", "q", 3)))
    journal.wait_durable(third)  # written after the failure: a good fsync covers it
    journal.close()


def test_a_journal_file_removed_while_idle_is_replaced_by_the_next_snapshot(journaled, tmp_path):
    app = journaled("no")
    act(app, "post", "/queues", json={"name": "jobs"})
    backend = app.extensions["queues.backend"]
    assert backend.snapshotter.save() is True
    data = tmp_path / "data"
    data.rename(tmp_path / "elsewhere")
    data.mkdir()  # an operator's mistake, put right before any change came in
    with pytest.raises(journal_module.JournalWriteError):
        backend.journal._check_file()  # what its thread does every second
    # Nothing changed since the last snapshot, but only a snapshot starts a new journal file.
    assert backend.snapshotter.save() is True
    assert act(app, "post", "/queues/jobs/push", json={"message": {"n": 1}}).status_code == 201
    assert app.test_client().get("/health").status_code == 200


def test_write_all_writes_every_byte_and_reports_errors_as_oserror(tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        journal_module.write_all(fd, b"abc" * 100_000)
        journal_module.write_all(fd, b"")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abc" * 100_000
    read_only = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as raised:
            journal_module.write_all(read_only, b"x")
    finally:
        os.close(read_only)
    assert raised.value.errno == errno.EBADF


def test_write_all_gives_up_on_a_write_that_writes_nothing(monkeypatch):
    class WritesNothing:
        @staticmethod
        def write(fd, data, size):
            return 0

    monkeypatch.setattr(journal_module, "_libc", WritesNothing)
    with pytest.raises(OSError) as raised:
        journal_module.write_all(1, b"record")
    assert raised.value.errno == errno.EIO
