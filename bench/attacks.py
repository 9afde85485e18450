"""Good-request latency under attack, beside the same latency without it: part of `make bench`, or
alone with `python bench/attacks.py [--seconds S]`.

One client (keep-alive, cached good credentials, 127.0.0.1) sends GET /queues/jobs back to back
while (a) nothing else happens, (b) 16 clients from 16 other addresses flood wrong passwords,
(c) 64 connections have sent half a request. The users file holds scrypt hashes (werkzeug's
default), as deployed. Prints median and p99 and their ratio to (a). No figure fails anything.
"""

import argparse
import http.client
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from werkzeug.security import generate_password_hash  # noqa: E402

from queues.users import User, save_users  # noqa: E402
from tests.conftest import PASSWORDS, basic  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402

FLOODERS = 16
SLOW_CLIENTS = 64


def _latencies_ms(port, seconds):
    """Latencies of back-to-back good requests on one keep-alive connection for seconds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = basic("manager")
    found = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        connection.request("GET", "/queues/jobs", headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        found.append((time.perf_counter() - started) * 1000)
    connection.close()
    return found


def _figures(latencies, base=None):
    ordered = sorted(latencies)
    figures = {
        "requests": len(ordered),
        "median_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }
    if base is not None:
        figures["median_ratio"] = figures["median_ms"] / base["median_ms"]
        figures["p99_ratio"] = figures["p99_ms"] / base["p99_ms"]
    return figures


def _flood(port, stop, answers):
    """FLOODERS threads, each from its own address, sending wrong passwords as fast as answered
    until stop is set; then puts the count of each answer on answers."""
    statuses = {}

    def flood(source):
        headers = basic("manager", "wrong-guess")
        while not stop.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
            try:
                connection.request("GET", "/queues/jobs", headers=headers)
                status = connection.getresponse().status
                statuses[status] = statuses.get(status, 0) + 1
            except OSError:
                statuses["error"] = statuses.get("error", 0) + 1
            finally:
                connection.close()

    threads = [threading.Thread(target=flood, args=(f"127.0.0.{10 + i}",)) for i in range(FLOODERS)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(30)
    answers.put(statuses)


@contextmanager
def _wrong_password_flood(port):
    """The flood, in a process of its own: its threads must not take the measuring client's GIL."""
    stop, answers = multiprocessing.Event(), multiprocessing.Queue()
    process = multiprocessing.Process(target=_flood, args=(port, stop, answers))
    process.start()
    statuses = {}
    try:
        yield statuses
    finally:
        stop.set()
        statuses.update(answers.get(timeout=60))
        process.join(30)


@contextmanager
def _slow_clients(port):
    sockets = []
    try:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /queues HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
            sockets.append(sock)
        yield
    finally:
        for sock in sockets:
            sock.close()


def measure(workdir, seconds):
    """{quiet, wrong_password_flood, slow_clients}: each {requests, median_ms, p99_ms[, ratios]}."""
    directory = Path(workdir) / "attacks"
    directory.mkdir(parents=True, exist_ok=True)
    save_users(
        directory / "users.yaml",
        {name: User(name, name, generate_password_hash(PASSWORDS[name])) for name in ("admin", "manager")},
    )
    server = LiveServer(directory, logging={"level": "WARNING"}).start()
    try:
        server.session().post(server.url("/queues"), json={"name": "jobs"})
        quiet = _figures(_latencies_ms(server.port, seconds))
        with _wrong_password_flood(server.port) as statuses:
            flooded = _figures(_latencies_ms(server.port, seconds), quiet)
        flooded["flood_answers"] = {str(status): count for status, count in sorted(statuses.items(), key=str)}
        with _slow_clients(server.port):
            slowed = _figures(_latencies_ms(server.port, seconds), quiet)
    finally:
        server.stop()
    return {"quiet": quiet, "wrong_password_flood": flooded, "slow_clients": slowed}


def report(results):
    """Markdown rows of the figures."""
    rows = [
        "| good requests (GET /queues/jobs) | median ms | p99 ms | median ÷ quiet | p99 ÷ quiet |",
        "|---|---|---|---|---|",
    ]
    names = {
        "quiet": "quiet (baseline)",
        "wrong_password_flood": f"{FLOODERS} sources flooding wrong passwords",
        "slow_clients": f"{SLOW_CLIENTS} connections holding half a request",
    }
    for key, name in names.items():
        figures = results[key]
        ratios = (
            f"{figures['median_ratio']:.2f} | {figures['p99_ratio']:.2f}"
            if "median_ratio" in figures
            else "1.00 | 1.00"
        )
        rows.append(f"| {name} | {figures['median_ms']:.2f} | {figures['p99_ms']:.2f} | {ratios} |")
    answers = results["wrong_password_flood"]["flood_answers"]
    rows.append("")
    rows.append(
        f"Answers to the flood: {', '.join(f'{status}: {count}' for status, count in answers.items())}."
    )
    return "\n".join(rows) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5, help="length of each measurement")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="queue-attacks-") as work:
        results = measure(work, args.seconds)
    print(report(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
