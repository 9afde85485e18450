"""Leases where only the memory backend has them: across its restart and in its snapshots (the
contract both backends keep is in test_contract.py)."""

import json

import pytest

from queues.memory.manager import MemoryQueueManager
from tests.conftest import lease


@pytest.fixture
def qm(clock):
    manager = MemoryQueueManager(clock=clock)
    manager.create("jobs.dead", 100)
    manager.create("jobs", 3, max_deliveries=3, dead_letter_queue="jobs.dead")
    return manager


def test_restart_makes_in_flight_messages_available_with_their_deliveries(qm, clock):
    qm.push("jobs", [b'{"n":1}', b'{"n":2}', b'{"n":3}'])
    lease(qm, seconds=5)
    clock.now += 5
    lease(qm, 2)  # n=1 on its second delivery, n=2 on its first
    state, _ = qm.snapshot()
    restored = MemoryQueueManager.restore(state, clock=clock)
    restored.end_leases_after_restart()
    assert restored.info("jobs")["in_flight"] == 0
    again = lease(restored, 3)
    assert [(m["message"]["n"], m["deliveries"]) for m in again] == [(1, 3), (2, 2), (3, 1)]


def test_plain_pull_of_a_redelivered_message_forgets_its_count(qm, clock):
    qm.push("jobs", [b'{"n":1}'])
    lease(qm, seconds=5)
    clock.now += 5
    assert json.loads(qm.pull("jobs")[0])["message"] == {"n": 1}
    assert qm.snapshot()[0]["queues"][0]["deliveries"] == {}
