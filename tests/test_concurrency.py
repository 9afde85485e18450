"""Many processes at once against real servers: every message consumed exactly once, in order."""

import multiprocessing

import pytest

from tests.conftest import PASSWORDS, backend_sections, eventually
from tests.live_server import LiveServer
from tests.load_clients import consume, produce, read_records

pytestmark = pytest.mark.slow
PRODUCERS, CONSUMERS, PER_PRODUCER = 4, 4, 500
MANAGER = ("manager", PASSWORDS["manager"])
LEASES = pytest.mark.parametrize("lease", [None, 30], ids=["plain pulls", "leases and acks"])


def run_load(servers, tmp_path, lease):
    """Producers and consumers in their own processes, spread over servers; returns what they logged."""
    assert servers[0].session().post(servers[0].url("/queues"), json={"name": "jobs"}).status_code == 201
    context = multiprocessing.get_context("spawn")
    producers_done = context.Event()
    pushed = [tmp_path / f"pushed.{p}" for p in range(PRODUCERS)]
    pulled = [tmp_path / f"pulled.{c}" for c in range(CONSUMERS)]
    producers = [
        context.Process(
            target=produce,
            args=(servers[p % len(servers)].base_url, MANAGER, "jobs", p, pushed[p], PER_PRODUCER),
        )
        for p in range(PRODUCERS)
    ]
    consumers = [
        context.Process(
            target=consume,
            args=(servers[c % len(servers)].base_url, MANAGER, "jobs", pulled[c], producers_done, lease),
        )
        for c in range(CONSUMERS)
    ]
    for process in producers + consumers:
        process.start()
    for process in producers:
        process.join(120)
    producers_done.set()
    for process in consumers:
        process.join(120)
    assert all(process.exitcode == 0 for process in producers + consumers)
    return pushed, pulled


def assert_exactly_once_in_order(pushed, pulled, lease, info):
    sent = read_records(pushed, "pushed")
    assert len(sent) == PRODUCERS * PER_PRODUCER
    kind = "acked" if lease else "got"
    streams = [
        [line.split()[1:] for line in path.read_text().splitlines() if line.startswith(kind)]
        for path in pulled
    ]
    received = [message_id for stream in streams for message_id, _, _ in stream]
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert set(received) == set(sent), "a message was lost"
    assert (info["size"], info["pushed_total"]) == (0, PRODUCERS * PER_PRODUCER)
    for stream in streams:
        for producer in range(PRODUCERS):
            sequence = [int(seq) for _, p, seq in stream if int(p) == producer]
            assert sequence == sorted(sequence), "a consumer saw a producer's messages out of order"


@LEASES
def test_every_message_is_consumed_exactly_once_in_per_producer_order(tmp_path, lease):
    server = LiveServer(tmp_path / "server").start()
    try:
        pushed, pulled = run_load([server], tmp_path, lease)
        info = server.session().get(server.url("/queues/jobs")).json()
    finally:
        server.stop()
    assert_exactly_once_in_order(pushed, pulled, lease, info)


@LEASES
def test_two_instances_with_several_workers_sharing_redis_consume_each_message_once(
    tmp_path, redis_server, lease
):
    sections = backend_sections("redis", redis_server, workers=3)
    servers = [LiveServer(tmp_path / f"server{i}", **sections) for i in range(2)]
    try:
        for server in servers:
            server.start()
            eventually(lambda server=server: len(server.worker_pids()) == 3)
        pushed, pulled = run_load(servers, tmp_path, lease)
        info = servers[1].session().get(servers[1].url("/queues/jobs")).json()
    finally:
        for server in servers:
            server.stop()
    assert_exactly_once_in_order(pushed, pulled, lease, info)
