"""Producer and consumer loops for load tests, run in their own processes (light imports only)."""

import time

import requests

LOAD_SECONDS = 30


def produce(base_url, auth, queue, producer, path, count=None):
    """Push {"p", "seq"} one at a time; record each push that got its 201, until the server dies
    (or count messages are pushed)."""
    session = requests.Session()
    session.auth = auth
    deadline = time.monotonic() + LOAD_SECONDS
    with open(path, "w") as out:
        seq = 0
        while time.monotonic() < deadline and seq != count:
            try:
                response = session.post(
                    f"{base_url}/queues/{queue}/push", json={"message": {"p": producer, "seq": seq}}
                )
            except requests.RequestException:
                return
            if response.status_code == 201:
                out.write(f"pushed {response.json()['id']} {producer} {seq} {time.time()}\n")
                out.flush()
            seq += 1


def consume(base_url, auth, queue, path, until_empty=None, lease=None):
    """Pull up to 5 at a time, until the server dies or, once the until_empty event is set, the
    queue stays empty for a second.

    Records each message that came in a 200 ("got"), and with lease also each one whose ack got its
    200 ("acked"): a crash can cut off an ack's reply after the ack was done.
    """
    session = requests.Session()
    session.auth = auth
    deadline = time.monotonic() + LOAD_SECONDS
    empty_since = None
    query = "max=5&wait=0.2" + (f"&lease={lease}" if lease else "")
    with open(path, "w") as out:

        def record(kind, messages):
            for m in messages:
                out.write(f"{kind} {m['id']} {m['message']['p']} {m['message']['seq']}\n")
            out.flush()

        while time.monotonic() < deadline:
            try:
                response = session.post(f"{base_url}/queues/{queue}/pull?{query}")
                if response.status_code == 200:
                    empty_since = None
                    record("got", response.json()["messages"])
                    if lease:
                        receipts = [m["receipt"] for m in response.json()["messages"]]
                        acked = session.post(f"{base_url}/queues/{queue}/ack", json={"receipts": receipts})
                        if acked.status_code == 200:
                            record("acked", response.json()["messages"])
                elif until_empty is not None and until_empty.is_set():
                    empty_since = empty_since or time.monotonic()
                    if time.monotonic() - empty_since > 1.0:
                        return
            except requests.RequestException:
                return


def read_records(paths, kind):
    """{message id: (producer, seq)} of the lines of kind ("pushed", "got", "acked") in paths."""
    return {fields[1]: (int(fields[2]), int(fields[3])) for fields in _lines(paths, kind)}


def push_times(paths):
    """{message id: when its push got its 201 (epoch seconds)}."""
    return {fields[1]: float(fields[4]) for fields in _lines(paths, "pushed")}


def _lines(paths, kind):
    for path in paths:
        for line in path.read_text().splitlines():
            fields = line.split()
            if fields[0] == kind:
                yield fields
