"""An example producer: creates the `jobs` and `results` queues if needed and pushes N jobs.

QUEUES_USER=admin QUEUES_PASSWORD=... python examples/producer.py --count 5
"""

import argparse
import datetime
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client import QueueClient, QueueExists  # noqa: E402

QUEUES = [
    ("jobs.dead", {}),
    ("jobs", {"schema": "job", "max_deliveries": 3, "dead_letter_queue": "jobs.dead"}),
    ("results", {"schema": "result"}),
]
TICKERS = ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "JPM", "XOM", "BRK.B"]


def job(number):
    start = datetime.date(2026, 1, 2) + datetime.timedelta(days=number % 30)
    return {
        "id": f"job-{number}",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "status": "pending",
        "type": "moving_average",
        "owner": "examples",
        "date_range": {"start": start.isoformat(), "end": (start + datetime.timedelta(days=90)).isoformat()},
        "assets": [TICKERS[number % len(TICKERS)], TICKERS[(number + 3) % len(TICKERS)]],
        "parameters": {"window": 20},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("QUEUES_URL", "http://127.0.0.1:7500"))
    parser.add_argument("--user", default=os.environ.get("QUEUES_USER", "admin"))
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args(argv)
    password = os.environ.get("QUEUES_PASSWORD") or parser.error("set QUEUES_PASSWORD")
    client = QueueClient(args.url, args.user, password)
    for name, settings in QUEUES:
        try:
            client.create_queue(name, **settings)
        except QueueExists:
            continue
    ids = []
    for first in range(0, args.count, 100):
        ids += client.push_batch("jobs", [job(n) for n in range(first, min(args.count, first + 100))])
    print(f"pushed {len(ids)} job(s) to jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
