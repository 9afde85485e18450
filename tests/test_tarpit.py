"""The tarpit's memory of held sources: a fixed pause from the last hold, and a bounded size."""

import socket
import time

import pytest
import requests

from queues import tarpit as tarpit_module
from queues.tarpit import Tarpit
from tests.conftest import basic
from tests.live_server import LiveServer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_held_source_is_held_for_the_pause_from_its_last_hold():
    clock = Clock()
    tarpit = Tarpit(pause_seconds=1.0, clock=clock)
    assert tarpit.until("10.0.0.1") is None
    tarpit.hold("10.0.0.1")
    clock.now += 0.5
    tarpit.hold("10.0.0.1")
    assert tarpit.until("10.0.0.1") == 101.5
    assert tarpit.until("10.0.0.2") is None
    clock.now += 1.0
    assert tarpit.until("10.0.0.1") is None


def test_beyond_the_most_sources_the_oldest_holds_are_forgotten(monkeypatch):
    monkeypatch.setattr(tarpit_module, "MAX_SOURCES", 3)
    clock = Clock()
    tarpit = Tarpit(pause_seconds=10.0, clock=clock)
    for i in range(5):
        tarpit.hold(f"10.0.0.{i}")
        clock.now += 0.1
    assert [tarpit.until(f"10.0.0.{i}") is not None for i in range(5)] == [False, False, True, True, True]


def test_a_source_answered_429_for_failed_logins_is_held_and_others_are_not(make_app):
    app = make_app(auth={"max_failed_logins": 2})
    client = app.test_client()
    wrong = basic("manager", "guess")
    attacker = {"REMOTE_ADDR": "192.0.2.7"}
    statuses = [client.get("/queues", headers=wrong, environ_base=attacker).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    tarpit = app.extensions["queues.tarpit"]
    assert tarpit.until("192.0.2.7") is not None
    assert (
        client.get("/queues", headers=basic("manager"), environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code
        == 200
    )
    assert tarpit.until("192.0.2.8") is None


def test_behind_a_trusted_proxy_there_is_no_tarpit(make_app):
    # Every client shares the proxy's connections: pausing them would pause everyone.
    app = make_app(auth={"max_failed_logins": 1}, server={"trusted_proxies": 1})
    client = app.test_client()
    forwarded = {**basic("manager", "guess"), "X-Forwarded-For": "192.0.2.9"}
    assert [client.get("/queues", headers=forwarded).status_code for _ in range(2)] == [401, 429]
    assert "queues.tarpit" not in app.extensions


@pytest.mark.slow
def test_at_the_connection_limit_a_held_sources_waiting_connections_go_before_another_clients(
    tmp_path, monkeypatch
):
    # Held connections are in no one's reading deadline: without this, a flooder's held connections
    # filled the worker and the client being read was the one dropped to make room.
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--worker-connections=8")
    server = LiveServer(tmp_path, auth={"max_failed_logins": 1}).start()
    held = []
    try:
        other = socket.create_connection(("127.0.0.1", server.port), source_address=("127.0.0.2", 0))
        other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # half its head, still being read
        wrong = requests.Session()
        wrong.auth = ("admin", "wrong")
        while wrong.get(server.url("/queues")).status_code != 429:
            pass
        for _ in range(12):  # within the pause: each waits unread
            held.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.3)  # for the worker to accept them, still within the pause
        other.sendall(b"Connection: close\r\n\r\n")
        other.settimeout(10)
        assert other.recv(100).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in held:
            sock.close()
        server.stop()
