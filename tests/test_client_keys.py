"""The client's idempotency keys, against a small local stand-in for the server: every push carries
a fresh key and its retries carry the same one, and push --file derives its keys from the file."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from client import QueueClient, QueueError, Retry, StorageUnavailable
from client.push_file import PartialPush, batch_key, push_file


class _Stub(BaseHTTPRequestHandler):
    """Answers each push with the next of the server's scripted replies: "drop" closes the
    connection without an answer, a status answers that status."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        self.server.seen.append((self.headers.get("Idempotency-Key"), body))
        reply = self.server.replies.pop(0) if self.server.replies else 201
        if reply == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if reply == 201:
            count = len(body.get("messages", [None]))
            payload = {"ids": [f"m{n}" for n in range(count)], "id": "m0", "queue": "q", "size": count}
        else:
            payload = {"error": {"code": "storage_unavailable", "message": "disk full"}}
        data = json.dumps(payload).encode()
        self.send_response(reply)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.seen, server.replies = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def client_of(stub, **options):
    return QueueClient(f"http://127.0.0.1:{stub.server_address[1]}", "admin", "x", **options)


def test_each_push_carries_a_fresh_key(stub):
    client = client_of(stub)
    client.push("q", {"n": 1})
    client.push_batch("q", [{"n": 2}])
    keys = [key for key, _ in stub.seen]
    assert len(keys) == 2 and all(keys) and keys[0] != keys[1]


@pytest.mark.parametrize("failure", ["drop", 503], ids=["lost reply", "storage_unavailable"])
def test_a_retried_push_sends_the_same_key_again(stub, failure):
    stub.replies = [failure, failure, 201]
    client_of(stub, retry=Retry(attempts=5, backoff=0.01)).push("q", {"n": 1})
    assert len(stub.seen) == 3
    assert len({key for key, _ in stub.seen}) == 1


def test_a_given_key_is_sent_as_given(stub):
    client_of(stub).push_batch("q", [{"n": 1}], key="order-42")
    assert stub.seen[0][0] == "order-42"


def test_without_retry_a_failed_push_raises_after_one_attempt(stub):
    stub.replies = [503]
    with pytest.raises(StorageUnavailable):
        client_of(stub).push("q", {"n": 1})
    assert len(stub.seen) == 1


def test_a_pull_is_not_repeated_after_a_lost_reply(stub):
    stub.replies = ["drop"]
    with pytest.raises(QueueError) as error:
        client_of(stub, retry=Retry(attempts=5, backoff=0.01)).pull("q")
    assert error.value.code == "unreachable" and len(stub.seen) == 1


def test_a_file_pushed_twice_sends_the_same_keys(stub, tmp_path):
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(25)))
    push_file(client_of(stub), "q", str(lines), size=10)
    push_file(client_of(stub), "q", str(lines), size=10)
    keys = [key for key, _ in stub.seen]
    assert len(keys) == 6 and keys[:3] == keys[3:] and len(set(keys)) == 3


def test_fixing_a_bad_line_keeps_the_keys_of_the_batches_before_it(stub, tmp_path):
    good = [json.dumps({"n": n}) for n in range(25)]
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("\n".join([*good[:14], "{bad", *good[15:]]) + "\n")
    with pytest.raises(PartialPush) as stopped:
        push_file(client_of(stub), "q", str(lines), size=10)
    assert (stopped.value.pushed, stopped.value.line) == (10, 15)
    assert len(stub.seen) == 1  # the batch holding the bad line was not sent
    lines.write_text("\n".join(good) + "\n")
    push_file(client_of(stub), "q", str(lines), size=10)
    keys = [key for key, _ in stub.seen]
    assert keys[0] == keys[1] and len(set(keys)) == 3
    assert [m["n"] for _, body in stub.seen[1:] for m in body["messages"]] == list(range(25))


def test_a_batch_key_depends_on_position_and_content():
    assert batch_key(1, ['{"n": 1}']) == batch_key(1, ['{"n": 1}'])
    assert batch_key(1, ['{"n": 1}']) != batch_key(2, ['{"n": 1}'])
    assert batch_key(1, ['{"n": 1}']) != batch_key(1, ['{"n": 2}'])
