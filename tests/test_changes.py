"""The memory backend's change records: the journal replays through the same apply() as the live
service, so the state after a crash and recovery is the state the service held before it."""

import json
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queues.backend import Idempotency
from queues.errors import QueueServiceError
from queues.memory import changes
from queues.memory.manager import MemoryQueueManager
from queues.memory.recovery import read_changes, read_durable
from queues.memory.snapshotter import Snapshotter
from storage import journal as journal_module
from storage.journal import Journal, JournalError, encode, journal_path
from tests.conftest import Clock


def journaled(path, clock, fsync="no"):
    """A manager journaling into the generation-0 file beside path (a snapshot path)."""
    manager = MemoryQueueManager(clock=clock)
    manager.start_journal(0, Journal(path, 0, fsync))
    return manager


def recovered(path):
    """The manager start-up would build from the files beside path, before it ends any lease."""
    state, replayed, _ = read_durable(path)
    return MemoryQueueManager.restore(state, replayed)


def queue_states(manager):
    """Every queue's settings, counters, messages, delivery counts and leases (receipts, expiries)."""
    return manager.snapshot()[0]["queues"]


def receipts_of(pulled):
    return [json.loads(rendered)["receipt"] for rendered in pulled]


def test_replaying_a_journal_with_every_kind_of_change_rebuilds_the_live_state(tmp_path):
    path, clock = tmp_path / "queues.pickle", Clock()
    live = journaled(path, clock)
    live.create("dead", 10)
    live.create("jobs", 10, schema="job", max_deliveries=2, dead_letter_queue="dead")
    live.create("gone", 5)
    live.push("gone", [b"{}"])
    live.delete("gone")
    live.push("jobs", [b'{"n":%d}' % n for n in range(8)])
    live.pull("jobs")  # take
    first, second, third, fourth = receipts_of(live.pull("jobs", 4, lease=30))
    live.ack("jobs", [first])
    live.nack("jobs", second)  # back at the head, one delivery used
    live.extend("jobs", third, 100)
    clock.now += 50  # fourth expires; third, extended, does not
    live.expire_leases()
    (again,) = receipts_of(live.pull("jobs", 1, lease=10))  # second's message, its 2nd delivery
    live.nack("jobs", again, reason="bad data")  # out of deliveries: dead-lettered, with its reason
    live.redrive("dead", to="jobs")  # back at the tail of jobs
    live.push("jobs", [b'{"n":8}'], Idempotency("key", "digest", 300))  # the key kept with the push
    (last,) = receipts_of(live.pull("jobs", 1, lease=10))  # fourth's message, its 2nd delivery
    live.nack("jobs", last, delay=30)  # a delay on the last delivery: dead-lettered at once
    live.create("scratch", 5)
    live.push("scratch", [b"{}", b"{}"])
    (later,) = receipts_of(live.pull("scratch", 1, lease=10))
    live.nack("scratch", later, delay=30, reason="busy")  # in flight, hidden, for 30 s more
    live.purge("scratch")
    live.push("scratch", [b"{}"])
    (later,) = receipts_of(live.pull("scratch", 1, lease=10))
    live.nack("scratch", later, delay=30, reason="busy")
    live.pull("jobs", 1, lease=10)
    live.end_leases_after_restart()
    live.pull("jobs", 1, lease=60)

    journaled_kinds = {change.kind for change in read_changes(journal_path(path, 0))}
    assert journaled_kinds == set(changes.KINDS)
    assert queue_states(recovered(path)) == queue_states(live)
    assert live.info("dead")["size"] == 1 and live.info("jobs")["dead_lettered_total"] == 2


def test_a_record_of_an_unknown_kind_stops_start_up_naming_the_file(tmp_path):
    path = tmp_path / "queues.pickle.journal.00000000"
    path.write_bytes(encode(("push", "q", [b"x"])) + encode(("teleport", "q")))
    with pytest.raises(JournalError, match=rf"{path}: not a change record"):
        read_changes(path)


def test_a_journal_record_is_the_kind_then_the_fields_in_order():
    lease = changes.Lease("jobs", ["r1", "r2"], 12.5)
    assert lease.plain() == ("lease", "jobs", ["r1", "r2"], 12.5)
    assert changes.decode(lease.plain()) == lease


# A sequence of operations on three queue names; errors (a missing queue, a full one, an unknown
# receipt...) are part of the test: a refused operation must leave no trace in the journal.
NAMES = st.sampled_from(["a", "b", "dead"])
CREATE_ALL = [("create", "dead", 6, 2, False), ("create", "a", 6, 2, True), ("create", "b", 6, 2, False)]
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), NAMES, st.integers(1, 6), st.sampled_from([1, 2]), st.booleans()),
        st.tuples(st.just("delete"), NAMES),
        st.tuples(st.just("push"), NAMES, st.integers(1, 4)),
        st.tuples(st.just("push"), NAMES, st.integers(1, 4)),
        st.tuples(st.just("pull"), NAMES, st.integers(1, 3), st.sampled_from([None, 5, 20])),
        st.tuples(st.just("pull"), NAMES, st.integers(1, 3), st.sampled_from([None, 10])),
        st.tuples(st.just("ack"), st.integers(0, 3)),
        st.tuples(st.just("nack"), st.integers(0, 3)),
        st.tuples(st.just("extend"), st.integers(0, 3), st.integers(1, 30)),
        st.tuples(st.just("tick"), st.integers(0, 25)),
        st.tuples(st.just("snapshot")),
        st.tuples(st.just("snapshot killed before its file is written")),
        st.tuples(st.just("restart")),
    ),
    min_size=10,
    max_size=60,
)


def run(manager, snapshotter, clock, operations):
    leased = []  # (queue, receipt) of every lease handed out, oldest first, ended or not
    for operation, *args in operations:
        try:
            if operation == "create":
                name, max_messages, max_deliveries, with_dead_letters = args
                if with_dead_letters and name != "dead":  # the API takes both or neither
                    manager.create(name, max_messages, None, max_deliveries, "dead")
                else:
                    manager.create(name, max_messages)
            elif operation == "delete":
                manager.delete(args[0])
            elif operation == "push":
                name, count = args
                manager.push(name, [b'{"n":%d}' % n for n in range(count)])
            elif operation == "pull":
                name, count, lease = args
                pulled = manager.pull(name, count, lease=lease)
                if lease is not None:
                    leased += [(name, receipt) for receipt in receipts_of(pulled)]
            elif operation in ("ack", "nack", "extend") and leased:
                name, receipt = leased[-1 - args[0] % len(leased)]  # recent ones are likelier live
                if operation == "ack":
                    manager.ack(name, [receipt])
                elif operation == "nack":
                    manager.nack(name, receipt)
                else:
                    manager.extend(name, receipt, args[1])
            elif operation == "tick":
                clock.now += args[0]
                manager.expire_leases()
            elif operation == "snapshot":
                snapshotter.save()
            elif operation == "snapshot killed before its file is written":
                manager.snapshot()  # the state copied and a new journal generation started, no more
            elif operation == "restart":
                manager.end_leases_after_restart()
        except QueueServiceError:
            continue


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS)
def test_state_recovered_after_a_crash_equals_the_state_before_it(operations):
    with tempfile.TemporaryDirectory() as directory:
        path, clock = Path(directory) / "queues.pickle", Clock()
        live = journaled(path, clock)
        run(live, Snapshotter(live, path, 3600), clock, CREATE_ALL + operations)
        # The crash: the live manager is dropped, nothing more is written; start-up reads the files.
        assert queue_states(recovered(path)) == queue_states(live)


def test_fsync_everysec_never_fsyncs_on_the_request_path(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "CHECK_EVERY_SECONDS", 0.05)
    fsyncs = []
    real_fsync = journal_module.os.fsync

    def recording_fsync(fd):
        fsyncs.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", recording_fsync)
    manager = journaled(tmp_path / "queues.pickle", Clock(), fsync="everysec")
    manager.create("jobs", 100)
    for n in range(20):
        manager.push("jobs", [b'{"n":%d}' % n])
    assert fsyncs == []
    manager._journal.start()
    deadline = threading.Event()
    while not fsyncs and not deadline.wait(0.05):
        pass
    manager._journal.close()
    assert set(fsyncs) == {"journal-check", "MainThread"}  # the checker's, then close()'s final one


def test_a_replayed_push_answers_no_sooner_than_the_first_push_is_on_disk(tmp_path, monkeypatch):
    manager = journaled(tmp_path / "queues.pickle", Clock(), fsync="always")
    manager.create("jobs", 100)
    syncing, release = threading.Event(), threading.Event()
    real_fsync = journal_module.os.fsync

    def held_fsync(fd):
        syncing.set()
        release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(journal_module.os, "fsync", held_fsync)
    once = Idempotency("k", "d", 300)
    replies = {}

    def push(who):
        replies[who] = manager.push("jobs", [b"{}"], once)

    first = threading.Thread(target=push, args=("first",))
    first.start()
    assert syncing.wait(10)
    # The first push is journaled and its fsync under way: a retry must not be told "done" before it.
    retry = threading.Thread(target=push, args=("retry",))
    retry.start()
    retry.join(0.5)
    assert "retry" not in replies
    release.set()
    first.join()
    retry.join()
    assert replies["retry"] == (replies["first"][0], 1, True)


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_a_snapshot_opens_and_syncs_journal_files_only_outside_the_locks(tmp_path, monkeypatch, fsync):
    path = tmp_path / "queues.pickle"
    manager = journaled(path, Clock(), fsync=fsync)
    manager.create("jobs", 100)
    manager.push("jobs", [b"{}"])
    file_calls = []  # (call, whether the registry lock was held)
    for call in ("open", "fsync", "close"):
        real = getattr(journal_module.os, call)

        def recording(*args, _call=call, _real=real):
            file_calls.append((_call, manager._lock.locked()))
            return _real(*args)

        monkeypatch.setattr(journal_module.os, call, recording)
    assert Snapshotter(manager, path, 3600).save() is True
    assert ("open", False) in file_calls and ("close", False) in file_calls
    assert all(not locked for _, locked in file_calls)
    monkeypatch.undo()
    manager.push("jobs", [b'{"n":2}'])  # into the new generation, after the snapshot
    assert queue_states(recovered(path)) == queue_states(manager)


def test_an_unchanged_state_starts_no_new_journal_file(tmp_path, monkeypatch):
    path = tmp_path / "queues.pickle"
    manager = journaled(path, Clock())
    manager.create("jobs", 100)
    snapshotter = Snapshotter(manager, path, 3600)
    assert snapshotter.save() is True
    opened = []  # every os.open: the journal's and the snapshot's own (its folder, to fsync it)
    real_open = journal_module.os.open
    monkeypatch.setattr(journal_module.os, "open", lambda *args: opened.append(args[0]) or real_open(*args))
    assert snapshotter.save() is False  # an idle service, every interval
    assert opened == []
    manager.push("jobs", [b"{}"])
    assert snapshotter.save() is True
    assert journal_path(path, 2) in opened
