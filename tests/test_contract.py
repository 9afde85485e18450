"""The contract both backends keep, run on each (the memory one, and Redis on a real redis-server):
leases, acks, nacks, extends, expiry, delivery counts and dead letters, with a clock the tests step
by hand instead of sleeping through leases."""

import json
import threading
import time

import pytest

from queues.errors import InvalidRequest, QueueFull, QueueInUse, ReceiptInvalid
from queues.memory.manager import MemoryQueueManager
from queues.redis_manager import RedisQueueManager
from tests.conftest import lease


@pytest.fixture(params=["memory", "redis"])
def qm(request, clock):
    """A backend on the test's clock with queues jobs (3 messages, 3 deliveries) and jobs.dead."""
    if request.param == "memory":
        manager = MemoryQueueManager(clock=clock)
    else:
        redis_server = request.getfixturevalue("redis_server")
        redis_server.client().flushall()
        manager = RedisQueueManager(redis_server.url, 8, clock=clock)
    manager.create("jobs.dead", 100)
    manager.create("jobs", 3, max_deliveries=3, dead_letter_queue="jobs.dead")
    yield manager
    manager.close()


class TestLeaseContract:
    def test_leased_message_is_hidden_but_still_counted(self, qm):
        qm.push("jobs", [b'{"n":1}', b'{"n":2}'])
        (first,) = lease(qm)
        assert first["message"] == {"n": 1} and first["deliveries"] == 1
        assert first["receipt"] and first["lease_expires_at"].endswith("Z")
        assert [m["message"] for m in lease(qm, 5)] == [{"n": 2}]
        assert qm.pull("jobs", lease=30) == []
        info = qm.info("jobs")
        assert (info["size"], info["in_flight"]) == (2, 2)

    def test_leased_messages_count_toward_max_messages(self, qm):
        qm.push("jobs", [b"{}"] * 3)
        lease(qm, 2)
        with pytest.raises(QueueFull):
            qm.push("jobs", [b"{}"])

    def test_ack_removes_the_message_for_good(self, qm, clock):
        qm.push("jobs", [b'{"n":1}'])
        (leased,) = lease(qm)
        assert qm.ack("jobs", [leased["receipt"]]) == 1
        clock.now += 3600
        assert qm.pull("jobs") == []
        assert qm.info("jobs")["size"] == 0 and qm.info("jobs")["acked_total"] == 1

    def test_ack_of_an_unknown_receipt_changes_nothing(self, qm):
        qm.push("jobs", [b'{"n":1}', b'{"n":2}'])
        good = [m["receipt"] for m in lease(qm, 2)]
        with pytest.raises(ReceiptInvalid) as error:
            qm.ack("jobs", [good[0], "forged", good[1]])
        assert [d["index"] for d in error.value.details] == [1]
        assert qm.info("jobs")["in_flight"] == 2
        assert qm.ack("jobs", good) == 2

    def test_expired_lease_puts_the_message_back_at_the_head_counting_deliveries(self, qm, clock):
        qm.push("jobs", [b'{"n":1}', b'{"n":2}'])
        (first,) = lease(qm, seconds=10)
        clock.now += 10
        (again,) = lease(qm)
        assert again["id"] == first["id"] and again["deliveries"] == 2
        with pytest.raises(ReceiptInvalid):
            qm.ack("jobs", [first["receipt"]])
        assert qm.ack("jobs", [again["receipt"]]) == 1

    def test_nack_puts_the_message_back_at_once(self, qm):
        qm.push("jobs", [b'{"n":1}', b'{"n":2}'])
        (first,) = lease(qm)
        assert qm.nack("jobs", first["receipt"]) == {
            "id": first["id"],
            "deliveries": 1,
            "dead_lettered": False,
        }
        assert [json.loads(r)["message"] for r in qm.pull("jobs", 2)] == [{"n": 1}, {"n": 2}]
        with pytest.raises(ReceiptInvalid):
            qm.nack("jobs", first["receipt"])

    def test_extend_keeps_the_lease_alive_past_its_first_expiry(self, qm, clock):
        qm.push("jobs", [b'{"n":1}'])
        (leased,) = lease(qm, seconds=10)
        clock.now += 8
        assert qm.extend("jobs", leased["receipt"], 10)["lease_expires_at"] > leased["lease_expires_at"]
        clock.now += 8
        assert qm.pull("jobs", lease=10) == []
        assert qm.ack("jobs", [leased["receipt"]]) == 1

    def test_extend_of_an_expired_lease_is_refused(self, qm, clock):
        qm.push("jobs", [b'{"n":1}'])
        (leased,) = lease(qm, seconds=10)
        clock.now += 11
        with pytest.raises(ReceiptInvalid):
            qm.extend("jobs", leased["receipt"], 10)

    def test_message_out_of_deliveries_moves_to_the_dead_letter_queue(self, qm, clock):
        qm.push("jobs", [b'{"poison":true}', b'{"n":2}'])
        for delivery in (1, 2):
            (leased,) = lease(qm, seconds=5)
            assert leased["deliveries"] == delivery and leased["message"] == {"poison": True}
            clock.now += 5
        (last,) = lease(qm)
        assert last["deliveries"] == 3
        assert qm.nack("jobs", last["receipt"])["dead_lettered"] is True
        assert [m["message"] for m in lease(qm)] == [{"n": 2}]
        assert json.loads(qm.pull("jobs.dead")[0])["message"] == {"poison": True}
        assert qm.info("jobs")["dead_lettered_total"] == 1

    def test_expiry_sweep_moves_dead_letters_and_wakes_waiting_pullers(self, qm, clock):
        qm.push("jobs", [b'{"n":1}'])
        (leased,) = lease(qm, seconds=5)
        got = []
        puller = threading.Thread(target=lambda: got.extend(qm.pull("jobs", 1, wait=10)))
        puller.start()
        time.sleep(0.1)
        clock.now += 5
        qm.expire_leases()
        puller.join(5)
        assert json.loads(got[0])["id"] == leased["id"]

    def test_queue_named_as_a_dead_letter_queue_cannot_be_deleted(self, qm):
        with pytest.raises(QueueInUse, match="jobs"):
            qm.delete("jobs.dead")
        qm.delete("jobs")
        assert qm.delete("jobs.dead") == 0

    @pytest.mark.parametrize(
        "target", ["missing", "jobs"], ids=["dead-letter queue must exist", "no chains of dead-letter queues"]
    )
    def test_bad_dead_letter_queue_is_refused(self, qm, target):
        with pytest.raises(InvalidRequest):
            qm.create("other", 5, max_deliveries=2, dead_letter_queue=target)
