"""An example calculation worker: jobs in, results out, on leases so a crash loses no job.

    QUEUES_USER=manager QUEUES_PASSWORD=... python examples/worker.py --max-jobs 5

Pulls a job from `jobs` on a lease, computes each asset's last close and moving average over the
job's date range (from prices generated deterministically per ticker), extends the lease while it
works, pushes a `result` to `results`, then acks. A job it cannot compute is nacked, so it goes back
to the queue, and after the queue's max_deliveries to its dead-letter queue. SIGTERM finishes the
current job, then stops; so does Ctrl-C.

It rides out restarts of the service and outages of its storage: a call that gets no answer, or 503,
is tried again with a growing pause (one line on stderr each time), never ending the worker. A
result is pushed under an idempotency key made from the job's message id, so a job redone after its
lease was lost (the service restarted between the result and the ack) pushes no second result: the
service refuses the key as used (its timestamp differs), which the worker takes as done.
"""

import argparse
import datetime
import os
import random
import signal
import sys
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client import IdempotencyKeyReused, QueueClient, QueueError, ReceiptInvalid  # noqa: E402


def business_days(start, end):
    day = datetime.date.fromisoformat(start)
    last = datetime.date.fromisoformat(end)
    while day <= last:
        if day.weekday() < 5:
            yield day
        day += datetime.timedelta(days=1)


def prices(ticker, days):
    """A geometric random walk of closes, the same for the same ticker and days."""
    walk = random.Random(zlib.crc32(ticker.encode()))
    close = 50 + walk.random() * 150
    series = []
    for _ in days:
        close *= 1 + walk.gauss(0.0003, 0.015)
        series.append(round(close, 4))
    return series


def compute(job):
    """The figures of every asset of a job: last close and the simple moving average."""
    window = int(job.get("parameters", {}).get("window", 20))
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    days = list(business_days(job["date_range"]["start"], job["date_range"]["end"]))
    if not days:
        raise ValueError("the date range holds no business day")
    figures = {}
    for ticker in job["assets"]:
        closes = prices(ticker, days)
        recent = closes[-window:]
        figures[ticker] = {
            "last_close": closes[-1],
            f"sma_{window}": round(sum(recent) / len(recent), 4),
            "days": len(closes),
            "as_of": days[-1].isoformat(),
        }
    return figures


# Answers that say "not now" rather than "no": the service is restarting, its storage is away (503,
# or nginx's 502/504 while the service restarts), or the results queue is full for a moment.
TRANSIENT = {"unreachable", "storage_unavailable", "queue_full", "too_many_requests", "http_502", "http_503",
             "http_504"}  # fmt: skip
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 15.0


class Patient:
    """Calls the client again and again while the service is away, pausing longer each time."""

    def __init__(self, stopping):
        self.stopping = stopping

    def __call__(self, what, call, *args, **kwargs):
        """call(*args, **kwargs) until it answers; None if the worker was stopped while waiting."""
        pause = FIRST_PAUSE
        while True:
            try:
                return call(*args, **kwargs)
            except QueueError as exc:
                if exc.code not in TRANSIENT:
                    raise
                reason = exc.message.splitlines()[0][:160] if exc.message else ""
                print(
                    f"worker: {what}: {exc.code} ({reason}); trying again in {pause:.1f} s", file=sys.stderr
                )
            if self.stopping.wait(pause):
                return None
            pause = min(LONGEST_PAUSE, pause * 2)


def heartbeat(client, queue, receipt, lease, done):
    """Extend the lease every third of it until done is set, so a long job keeps its lease; a beat
    the service missed (restarting, storage away) is tried again soon, before the lease runs out."""
    pause = lease / 3
    while not done.wait(pause):
        try:
            client.extend(queue, receipt, lease)
            pause = lease / 3
        except QueueError as exc:
            print(f"worker: cannot extend the lease: {exc}", file=sys.stderr)
            if exc.code not in TRANSIENT:
                return
            pause = min(FIRST_PAUSE, lease / 3)


def handle(client, args, leased, patient):
    """Compute one leased job, push its result and ack it; True when it was done."""
    job = leased["message"]
    done = threading.Event()
    beat = threading.Thread(target=heartbeat, args=(client, args.jobs, leased["receipt"], args.lease, done))
    beat.start()
    try:
        time.sleep(args.work_seconds)  # stands for a long calculation
        figures = compute(job)
    except (KeyError, TypeError, ValueError) as exc:
        done.set()
        settle(patient, "nack", client.nack, args.jobs, leased["receipt"], reason=str(exc)[:200])
        print(f"worker: job {job.get('id')!r} failed ({exc}); returned it", file=sys.stderr)
        return False
    finally:
        done.set()
        beat.join()
    result = {
        "id": f"result-{job['id']}-{leased['id']}",
        "job_id": job["id"],
        "timestamp": datetime.datetime.now(datetime.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "assets": job["assets"],
        "results": figures,
        "status": "completed",
    }
    try:
        patient("push the result", client.push, args.results, result, key=result["id"])
    except IdempotencyKeyReused:
        # An earlier delivery of this very message pushed its result (the timestamp differs).
        print(f"worker: job {job['id']!r}: its result was pushed before; not again", file=sys.stderr)
    return settle(patient, "ack", client.ack, args.jobs, leased["receipt"])


def settle(patient, what, call, *args, **kwargs):
    """Ack or nack a lease; a lease lost meanwhile (expired, or ended by a restart) is only logged,
    as the job comes back to the queue by itself. True when it was settled."""
    try:
        return patient(what, call, *args, **kwargs) is not None
    except ReceiptInvalid:
        print(f"worker: {what}: the lease was lost meanwhile; the job will be done again", file=sys.stderr)
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("QUEUES_URL", "http://127.0.0.1:7500"))
    parser.add_argument("--user", default=os.environ.get("QUEUES_USER", "manager"))
    parser.add_argument("--jobs", default="jobs", help="queue to take jobs from")
    parser.add_argument("--results", default="results", help="queue to put results in")
    parser.add_argument("--lease", type=int, default=30, help="lease seconds (extended while working)")
    parser.add_argument("--wait", type=float, default=5, help="long-poll seconds")
    parser.add_argument("--work-seconds", type=float, default=0, help="pretend each job takes this long")
    parser.add_argument("--max-jobs", type=int, help="stop after this many jobs")
    parser.add_argument("--idle-exit", type=float, help="stop after this many seconds without a job")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: stopping.set())
    password = os.environ.get("QUEUES_PASSWORD") or parser.error("set QUEUES_PASSWORD")
    client = QueueClient(args.url, args.user, password)
    patient = Patient(stopping)
    done, idle_since = 0, time.monotonic()
    try:
        while not stopping.is_set() and done != args.max_jobs:
            leased = patient("pull", client.pull, args.jobs, wait=args.wait, lease=args.lease)
            if leased is None:
                if args.idle_exit is not None and time.monotonic() - idle_since > args.idle_exit:
                    break
                continue
            done += handle(client, args, leased, patient)
            idle_since = time.monotonic()
    except QueueError as exc:  # one that waiting will not cure: wrong password, no such queue...
        print(f"worker: stopped: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    print(f"worker: {done} job(s) done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
