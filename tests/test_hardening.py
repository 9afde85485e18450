"""Attacks and careless operation, each against a real gunicorn on both backends (several workers on
Redis): slow clients, password floods, cross-site posts, hostile input, a log that cannot be written,
secrets in the log, request ids across workers."""

import http.client
import json
import random
import re
import select
import shutil
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import requests
from werkzeug.security import generate_password_hash

from queues.users import User, save_users
from tests.conftest import PASSWORDS, basic, eventually
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
SLOW_CLIENTS = 64


def call(live, method, path, source="127.0.0.1", headers=None, body=None):
    """(status, headers, body) of one request on its own connection from source (any 127/8 address)."""
    connection = http.client.HTTPConnection("127.0.0.1", live.port, source_address=(source, 0), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def error_code(body):
    return json.loads(body)["error"]["code"]


@pytest.fixture
def queue_name(live, request):
    name = re.sub(r"[^A-Za-z0-9_.-]", "", request.node.name)[:60]
    assert live.session().post(live.url("/queues"), json={"name": name}).status_code == 201
    yield name
    live.session().delete(live.url(f"/queues/{name}"))


def half_requests(port, count):
    """count connections that each send part of a request and then nothing."""
    sockets = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:
            sock.sendall(b"POST /queues HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        else:
            sock.sendall(b'POST /queues HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"name"')
        sockets.append(sock)
    return sockets


def test_slow_clients_leave_health_and_authenticated_requests_answering(live, queue_name):
    # 12 long polls wait (the most allowed by default), and 64 clients send half a request each.
    polls = [
        threading.Thread(
            target=lambda: live.session("manager").post(
                live.url(f"/queues/{queue_name}/pull?wait=4"), timeout=10
            )
        )
        for _ in range(12)
    ]
    for poll in polls:
        poll.start()
    time.sleep(0.5)
    sockets = half_requests(live.port, SLOW_CLIENTS)
    try:
        assert requests.get(live.url("/health"), timeout=1).status_code == 200
        assert live.session("manager").get(live.url("/queues"), timeout=1).status_code == 200
        pushed = live.session("manager").post(
            live.url(f"/queues/{queue_name}/push"), json={"message": {"n": 1}}, timeout=1
        )
        assert pushed.status_code == 201
    finally:
        for sock in sockets:
            sock.close()
        for poll in polls:
            poll.join(10)


def test_a_request_sent_in_pieces_is_still_served(live):
    head = f"GET /queues HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('manager')['Authorization']}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        for piece in (head[:10], head[10:40], head[40:]):
            sock.sendall(piece.encode())
            time.sleep(0.2)
        assert sock.recv(100).startswith(b"HTTP/1.1 200")


def test_failed_logins_from_one_source_get_429_until_the_window_passes(live):
    wrong = basic("manager", "guess")
    for _ in range(10):
        assert call(live, "GET", "/queues", "127.0.0.21", wrong)[0] == 401
    status, headers, body = call(live, "GET", "/queues", "127.0.0.21", wrong)
    assert (status, error_code(body)) == (429, "too_many_requests")
    assert 1 <= int(headers["Retry-After"]) <= 60
    # Good credentials from that source are refused too; from another source they still work.
    assert call(live, "GET", "/queues", "127.0.0.21", basic("manager"))[0] == 429
    assert call(live, "GET", "/queues", "127.0.0.22", basic("manager"))[0] == 200


def test_a_throttled_connection_is_read_again_only_after_a_pause_while_others_are_served(live):
    wrong = basic("manager", "guess")
    for _ in range(10):
        assert call(live, "GET", "/queues", "127.0.0.24", wrong)[0] == 401
    connection = http.client.HTTPConnection(
        "127.0.0.1", live.port, source_address=("127.0.0.24", 0), timeout=10
    )
    try:
        connection.request("GET", "/queues", headers=wrong)
        response = connection.getresponse()
        response.read()
        assert response.status == 429 and not response.will_close
        # The same kept-alive connection: its next request waits in the tarpit, holding no thread.
        sent = time.monotonic()
        connection.request("GET", "/queues", headers={**wrong, "X-Request-ID": "tarpitted-1"})
        assert select.select([connection.sock], [], [], 0.3)[0] == []
        assert call(live, "GET", "/queues", "127.0.0.25", basic("manager"))[0] == 200
        assert select.select([connection.sock], [], [], 0)[0] == []
        response = connection.getresponse()
        response.read()
        assert 0.3 <= time.monotonic() - sent < 9
        assert response.status == 429 and 1 <= int(response.headers["Retry-After"]) <= 60
    finally:
        connection.close()
    # Held, but still served and logged like any other request.
    eventually(lambda: len(log_entries(live, "tarpitted-1")) == 2)


def test_requests_without_credentials_are_not_failed_logins(live):
    for _ in range(15):
        assert call(live, "GET", "/queues", "127.0.0.23")[0] == 401
    assert call(live, "GET", "/queues", "127.0.0.23", basic("manager"))[0] == 200


@pytest.mark.parametrize("method, path", [("POST", "/queues"), ("DELETE", "/queues/nothing")])
def test_a_cross_site_post_or_delete_is_refused_before_authentication(live, method, path):
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        for credentials in ({}, basic("admin")):
            status, _, body = call(live, method, path, headers={**headers, **credentials}, body=b"{}")
            assert (status, error_code(body)) == (403, "cross_origin"), headers


def test_a_cross_site_request_changes_nothing_and_same_origin_is_served(live):
    body = json.dumps({"name": "from-a-form"}).encode()
    headers = {**basic("admin"), "Content-Type": "application/json"}
    assert (
        call(live, "POST", "/queues", headers={**headers, "Origin": "http://evil.example"}, body=body)[0]
        == 403
    )
    assert live.session().get(live.url("/queues/from-a-form")).status_code == 404
    own = {**headers, "Origin": f"http://127.0.0.1:{live.port}", "Sec-Fetch-Site": "same-origin"}
    assert call(live, "POST", "/queues", headers=own, body=body)[0] == 201
    assert (
        call(live, "DELETE", "/queues/from-a-form", headers={**basic("admin"), "Origin": own["Origin"]})[0]
        == 200
    )
    # Reads are not state-changing; routing errors come first.
    assert call(live, "GET", "/queues", headers={**basic("admin"), "Origin": "http://evil.example"})[0] == 200
    assert call(live, "POST", "/nowhere", headers={"Origin": "http://evil.example"})[0] == 404
    assert call(live, "PUT", "/queues", headers={"Origin": "http://evil.example"})[0] == 405


def test_without_trusted_proxies_a_forwarded_scheme_does_not_pass_the_cross_site_check(live):
    # The live server trusts no proxy ([server] trusted_proxies = 0), not even one on loopback.
    headers = {**basic("admin"), "X-Forwarded-Proto": "https", "Origin": f"https://127.0.0.1:{live.port}"}
    status, _, body = call(live, "DELETE", "/queues/no-such-queue", headers=headers)
    assert (status, error_code(body)) == (403, "cross_origin")


@pytest.mark.parametrize("depth", [255, 1000, 5000])
def test_json_nested_too_deep_is_a_400(live, queue_name, depth):
    body = b'{"message": ' + b"[" * depth + b"]" * depth + b"}"
    status, _, answer = call(
        live,
        "POST",
        f"/queues/{queue_name}/push",
        headers={**basic("admin"), "Content-Type": "application/json"},
        body=body,
    )
    assert (status, error_code(answer)) == (400, "invalid_json")


def test_json_nested_as_deep_as_allowed_goes_through(live, queue_name):
    message = {"a": json.loads("[" * 252 + "]" * 252)}  # with the body's own object: 254 levels
    session = live.session()
    assert session.post(live.url(f"/queues/{queue_name}/push"), json={"message": message}).status_code == 201
    assert session.post(live.url(f"/queues/{queue_name}/pull")).json()["message"] == message


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": "\\ud800"}',
        b'{"message": ["\\udfff", 1234567890123456789]}',
        b'{"\\ud800": 12345678901234567890}',
    ],
)
def test_lone_surrogate_escapes_are_a_400(live, queue_name, body):
    headers = {**basic("admin"), "Content-Type": "application/json"}
    status, _, answer = call(live, "POST", f"/queues/{queue_name}/push", headers=headers, body=body)
    assert (status, error_code(answer)) == (400, "invalid_json")


def test_a_surrogate_sent_as_raw_utf8_bytes_is_a_400_and_stores_nothing(live, queue_name):
    # A body that holds an integer beyond 64 bits is decoded by the standard library: U+D800 as raw
    # bytes (not UTF-8) must not get in there, where no encoder could send it back out.
    body = b'{"message": {"s": "\xed\xa0\x80", "id": 12345678901234567890}}'
    headers = {**basic("admin"), "Content-Type": "application/json"}
    status, _, answer = call(live, "POST", f"/queues/{queue_name}/push", headers=headers, body=body)
    assert (status, error_code(answer)) == (400, "invalid_json")
    assert live.session().get(live.url(f"/queues/{queue_name}")).json()["size"] == 0


HEADERS_TO_FUZZ = [
    "Authorization", "Origin", "Host", "X-Request-ID", "Content-Type", "Sec-Fetch-Site",
    "X-Forwarded-For", "X-Forwarded-Proto", "Cookie", "Accept", "Idempotency-Key",
]  # fmt: skip


def raw_status(port, request_bytes):
    """The status of a raw request, or None if the server closed the connection without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_bytes)
        reply = b""
        while b"\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                return None
            reply += data
    return int(reply.split(b" ", 2)[1])


@pytest.mark.parametrize("header", HEADERS_TO_FUZZ)
def test_any_bytes_in_any_header_never_give_a_500(live, header):
    rng = random.Random(header)
    credentials = b"Authorization: " + basic("admin")["Authorization"].encode() + b"\r\n"
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(30)]
    samples += [
        b"Basic \xff\xfe",
        b"Basic " + b"\xc3\x28" * 5,
        b"\x00",
        b"Basic Og==",
        b"http://[::1",
        b":::",
    ]
    for value in samples:
        value = value.replace(b"\r", b"").replace(b"\n", b"")
        for method, path in (("GET", b"/queues"), ("POST", b"/queues"), ("GET", b"/health")):
            request_bytes = (
                method.encode() + b" " + path + b" HTTP/1.1\r\nHost: x\r\n"
                + (b"" if header == "Authorization" else credentials)
                + header.encode() + b": " + value + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            )  # fmt: skip
            status = raw_status(live.port, request_bytes)
            assert status is None or status < 500, (header, value, status)


def test_secrets_in_headers_and_query_are_masked_in_the_log(live):
    headers = {
        "Authorization": "SECRET-1 Basic",
        "X-Api-Key": "SECRET-2",
        "X-Access-Token": "SECRET-3",
        "Cookie": "session=SECRET-4",
        "X-Session-Id": "SECRET-5",
        "Idempotency-Key": "kept-1",
        "X-Request-ID": "masked-secrets-1",
    }
    status, response_headers, _ = call(
        live, "GET", "/queues?password=SECRET-6&limit=1&Api_Key=SECRET-7", headers=headers
    )
    assert status == 401 and response_headers["WWW-Authenticate"]
    eventually(lambda: len(log_entries(live, "masked-secrets-1")) == 2)
    request_line, response_line = log_entries(live, "masked-secrets-1")
    text = json.dumps([request_line, response_line])
    assert "SECRET" not in text
    assert request_line["headers"]["Authorization"] == "***"
    assert request_line["headers"]["Idempotency-Key"] == "kept-1"
    assert request_line["metadata"]["query"] == "password=***&limit=1&Api_Key=***"
    assert response_line["headers"]["WWW-Authenticate"] == 'Basic realm="queues"'
    call(live, "GET", "/queues", headers={**basic("admin"), "X-Request-ID": "masked-secrets-2"})
    eventually(lambda: len(log_entries(live, "masked-secrets-2")) == 2)
    assert log_entries(live, "masked-secrets-2")[0]["headers"]["Authorization"] == "Basic ***"


def log_entries(live, request_id):
    """The request log's lines of one request; a line still being written is left out."""
    path = live.directory / "logs" / "requests.log"
    text = path.read_text() if path.exists() else ""
    lines = text[: text.rfind("\n")].split("\n") if "\n" in text else []  # not splitlines: \x85 is no end
    return [entry for entry in map(json.loads, lines) if entry["request_id"] == request_id]


def test_request_ids_are_unique_across_workers_and_pair_the_right_lines(live):
    ids = []
    for i in range(60):  # a new connection each: with several workers, each gets some
        status, headers, _ = call(live, "GET", f"/queues?n={i}", headers=basic("manager"))
        assert status == 200
        ids.append(headers["X-Request-ID"])
    assert len(set(ids)) == len(ids)
    eventually(lambda: all(len(log_entries(live, request_id)) == 2 for request_id in ids))
    for i, request_id in enumerate(ids):
        request_line, response_line = log_entries(live, request_id)
        assert request_line["metadata"]["query"] == response_line["metadata"]["query"] == f"n={i}"


def degraded_log_error(live):
    response = requests.get(live.url("/health"), timeout=5)
    if response.status_code == 200:
        return None
    assert response.json()["status"] == "degraded"
    return response.json()["request_log"]["last_error"]


def dropped_lines(live):
    metrics = live.session().get(live.url("/metrics")).text
    return sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("queues_request_log_dropped_total")
    )


@pytest.mark.parametrize("breakage", ["folder removed", "file replaced by a folder"])
def test_request_log_that_cannot_be_written_degrades_health_counts_drops_and_heals(live, breakage):
    folder = live.directory / "logs"
    log_file = folder / "requests.log"
    dropped_before = dropped_lines(live)
    if breakage == "folder removed":
        shutil.rmtree(folder)
    else:
        log_file.unlink()
        log_file.mkdir()
    try:
        session = live.session("manager")
        # Requests are still served while /health names the log (every worker notices in turn).
        eventually(
            lambda: (
                session.get(live.url("/queues")).status_code == 200
                and str(log_file) in (degraded_log_error(live) or "")
            )
        )
        eventually(
            lambda: (
                session.get(live.url("/queues")).status_code == 200 and dropped_lines(live) > dropped_before
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    eventually(lambda: degraded_log_error(live) is None and degraded_log_error(live) is None)
    live.session("manager").get(live.url("/queues"), headers={"X-Request-ID": f"healed-{breakage[:4]}"})
    eventually(lambda: len(log_entries(live, f"healed-{breakage[:4]}")) == 2)


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """A server that allows 3 failed logins in a 2-second window, with few threads for the hash,
    and a users file of scrypt hashes (werkzeug's default, about 0.1 s a check)."""
    directory = tmp_path_factory.mktemp("tight")
    save_users(
        directory / "users.yaml",
        {"manager": User("manager", "manager", generate_password_hash(PASSWORDS["manager"]))},
    )
    server = LiveServer(
        directory,
        auth={"max_failed_logins": 3, "failed_login_window_seconds": 2},
        server={"threads": 4},
    )
    server.start()
    yield server
    server.stop()


def test_the_failed_login_window_slides(tight):
    wrong = basic("manager", "guess")
    for _ in range(3):
        assert call(tight, "GET", "/queues", "127.0.0.31", wrong)[0] == 401
    status, headers, _ = call(tight, "GET", "/queues", "127.0.0.31", wrong)
    assert status == 429 and headers["Retry-After"] in ("1", "2")
    time.sleep(int(headers["Retry-After"]) + 0.1)
    assert call(tight, "GET", "/queues", "127.0.0.31", basic("manager"))[0] == 200
    assert call(tight, "GET", "/queues", "127.0.0.31", wrong)[0] == 401


def test_a_new_connection_from_a_throttled_source_waits_the_pause_while_others_are_served(tight):
    wrong = basic("manager", "guess")
    for _ in range(3):
        assert call(tight, "GET", "/queues", "127.0.0.32", wrong)[0] == 401
    assert call(tight, "GET", "/queues", "127.0.0.32", wrong)[0] == 429
    head = f"GET /queues HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('manager')['Authorization']}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", tight.port), 10, ("127.0.0.32", 0)) as sock:
        sent = time.monotonic()
        sock.sendall(head.encode())
        assert select.select([sock], [], [], 0.3)[0] == []
        assert call(tight, "GET", "/queues", "127.0.0.33", basic("manager"))[0] == 200
        answer = sock.recv(100)
    assert 0.3 <= time.monotonic() - sent < 9
    # Still throttled, or (on a slow machine) the 2-second window has passed meanwhile.
    assert answer.startswith((b"HTTP/1.1 429", b"HTTP/1.1 200"))


def test_logins_beyond_the_hash_slots_get_429_retry_after_1(tight):
    # 4 threads: one login hashes at a time and one waits; make the hash slow enough to overlap.
    results = []

    def login(i):
        results.append(call(tight, "GET", "/queues", f"127.0.1.{i}", basic(f"nobody{i}", "x" * 100)))

    threads = [threading.Thread(target=login, args=(i,)) for i in range(1, 40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = {status for status, _, _ in results}
    assert statuses <= {401, 429}
    busy = [headers for status, headers, _ in results if status == 429]
    assert busy and all(headers["Retry-After"] == "1" for headers in busy)


def test_a_users_file_with_a_hash_it_cannot_check_stops_gunicorn_with_one_line(tmp_path):
    save_users(tmp_path / "users.yaml", {"mallory": User("mallory", "admin", "md5$abc$def")})
    server = LiveServer(tmp_path).start(wait=False)
    try:
        assert server.process.wait(30) != 0
    finally:
        server.kill9()
    lines = [line for line in server.stderr().splitlines() if "cannot start" in line]
    assert len(lines) == 1 and "user 'mallory'" in lines[0]
    assert "Traceback" not in server.stderr()


def test_a_snapshot_with_a_flipped_bit_stops_gunicorn_naming_the_file_and_is_kept(tmp_path):
    server = LiveServer(tmp_path).start()
    try:
        server.session().post(server.url("/queues"), json={"name": "pay"})
        server.session().post(server.url("/queues/pay/push"), json={"message": {"amount": "1000"}})
    finally:
        server.stop()
    path = tmp_path / "data" / "queues.pickle"
    damaged = path.read_bytes().replace(b'"1000"', b'"9000"')
    path.write_bytes(damaged)
    server.start(wait=False)
    try:
        assert server.process.wait(30) != 0
    finally:
        server.kill9()
    lines = [line for line in server.stderr().splitlines() if "cannot start" in line]
    assert len(lines) == 1 and str(path) in lines[0] and "checksum" in lines[0]
    assert path.read_bytes() == damaged


@contextmanager
def connections(live, count, sent=b"", receive_buffer=None):
    """count open connections to live that have each sent sent (with receive_buffer: a small one)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(5)
            if receive_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.connect(("127.0.0.1", live.port))
            sock.sendall(sent)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


# Requests that stop part-way after what a naive reader takes for a whole request: each must wait
# in the worker's event loop, not in a thread.
_POST = b"POST /queues HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
UNFINISHED_REQUESTS = {
    "expect_100_continue": _POST + b"Expect: 100-continue\r\nContent-Length: 100\r\n\r\n",
    "chunked_last_chunk_without_trailer_end": _POST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n",
    "chunked_data_that_looks_like_a_last_chunk": _POST
    + b"Transfer-Encoding: chunked\r\n\r\n20\r\nab\r\n0\r\nxx",
    "content_length_with_leading_zeros": _POST + b"Content-Length: 00000000000000000000100\r\n\r\n",
    "content_length_listed_twice": _POST + b"Content-Length: 100, 100\r\n\r\n",
    "head_of_many_long_fields": b"GET /health HTTP/1.1\r\n" + b"X-Pad: %s\r\n" % (b"p" * 8000) * 10,
    "pipelined_behind_a_whole_request": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHo",
}


@pytest.mark.parametrize("shape", sorted(UNFINISHED_REQUESTS))
def test_slow_clients_that_stop_part_way_in_any_shape_leave_health_answering(live, shape):
    with connections(live, SLOW_CLIENTS, UNFINISHED_REQUESTS[shape]):
        time.sleep(0.5)
        assert requests.get(live.url("/health"), timeout=1).status_code == 200


def test_a_head_too_long_to_be_read_is_a_json_400(live):
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(UNFINISHED_REQUESTS["head_of_many_long_fields"])
        response = sock.makefile("rb").read()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert error_code(body) == "invalid_request"


def test_a_request_that_expects_100_continue_gets_one_and_is_served(live):
    body = b'{"name": "expects-continue"}'
    head = (
        f"POST /queues HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('admin')['Authorization']}\r\n"
        f"Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(head.encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(100).startswith(b"HTTP/1.1 201")
    live.session().delete(live.url("/queues/expects-continue"))


def test_a_chunked_body_sent_in_pieces_is_served(live):
    body = b'{"name": "chunked-pieces"}'
    head = (
        f"POST /queues HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('admin')['Authorization']}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    pieces = [head.encode(), b"%x\r\n%s\r\n" % (10, body[:10]), b"%x;x=1\r\n" % (len(body) - 10)]
    pieces += [body[10:] + b"\r\n", b"0\r\n", b"X-Checksum: 1\r\n", b"\r\n"]
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.1)
        assert sock.recv(100).startswith(b"HTTP/1.1 201")
    live.session().delete(live.url("/queues/chunked-pieces"))


@pytest.mark.parametrize(
    "chunks",
    [
        b'9\r\n{"name":1}\r\n0\r\n\r\n',  # a chunk longer than its size says
        b'a\r\n{"name":1}\r\n0\r\nTrailer: x\r\n\r\n',  # a trailer field that may not be one
        b'a;=\r\n{"name":1}\r\n0\r\n\r\n',  # a malformed chunk extension
    ],
    ids=["chunk_longer_than_its_size", "forbidden_trailer_field", "malformed_extension"],
)
def test_broken_chunked_framing_is_a_400_not_a_500(live, chunks):
    head = (
        f"POST /queues HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('admin')['Authorization']}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(head.encode() + chunks)
        assert sock.recv(100).startswith(b"HTTP/1.1 400")


def test_a_thousand_idle_connections_leave_health_answering(live):
    # More than gunicorn's worker_connections (1000): the worker must not stop accepting for them.
    with connections(live, 1000):
        time.sleep(0.5)
        assert requests.get(live.url("/health"), timeout=1).status_code == 200


def test_clients_that_never_close_after_a_last_request_leave_health_answering(live):
    # After a response that ends the connection the server waits for the client's side to close;
    # a client that never closes must not make everyone else wait.
    with connections(live, 16, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") as sockets:
        time.sleep(0.5)
        for _ in range(3):
            assert requests.get(live.url("/health"), timeout=1).status_code == 200
        assert all(sock.recv(100).startswith(b"HTTP/1.1 200") for sock in sockets)


def test_pipelined_requests_are_all_answered_in_order(live):
    ids = [f"pipelined-{n}" for n in range(3)]
    requests_sent = b"".join(
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: %s\r\n\r\n" % request_id.encode()
        for request_id in ids
    )
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(requests_sent)
        received = b""
        while received.count(b"HTTP/1.1 200") < len(ids):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert re.findall(rb"X-Request-ID: (pipelined-\d)", received) == [i.encode() for i in ids]


def test_clients_that_pipeline_requests_and_never_read_leave_health_answering(live):
    # Each connection asks for far more than the socket buffers hold and reads none of it: the
    # responses still to send must wait in the event loop, not in threads blocked on a full socket.
    with connections(live, 16, b"GET /openapi.yaml HTTP/1.1\r\nHost: x\r\n\r\n" * 300, receive_buffer=1024):
        time.sleep(1)
        assert requests.get(live.url("/health"), timeout=1).status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /queues/jobs/pull?" + b"lease=1&" * 1200 + b" HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.1\r\nConnection: close\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
    ],
    ids=["long-request-line", "long-header"],
)
def test_a_long_request_line_or_field_within_the_head_limit_reaches_the_service(live, request_bytes):
    # gunicorn's own limits (4 KB a request line, 8 KB a field) would answer an HTML 414 or 431.
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        head, _, body = sock.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.split()[1] in (b"200", b"401"), head
    assert json.loads(body)


@pytest.mark.parametrize(
    "request_bytes",
    [b"GET /he\x01alth HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /health HTTP/1.1\r\nBad Name: 1\r\n\r\n"],
    ids=["control-byte-in-target", "space-in-header-name"],
)
def test_a_request_gunicorn_cannot_parse_is_answered_with_a_json_error(live, request_bytes):
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        response = sock.makefile("rb").read()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"content-type: application/json" in head.lower()
    assert error_code(body) == "invalid_request"
