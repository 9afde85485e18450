"""The benchmark: `make bench` (full, a few minutes) or `python bench/benchmark.py --quick`.

Runs the real service under gunicorn on loopback, as deployed (authentication and the full request
log on), and a do-nothing Flask endpoint under the same gunicorn settings as the baseline; drives
both with wrk (keep-alive, 16 connections, one thread); prints a table and writes it as Markdown and
JSON. The Redis backend is measured with 1, 2 and 4 workers (2 with --quick), on fresh redis-servers.
Every figure is the median of several runs, with min and max. No figure fails anything.
"""

import argparse
import base64
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import attacks  # noqa: E402
from queues.config import ServerConfig  # noqa: E402
from queues.fifo import Queue  # noqa: E402
from queues.memory.manager import SNAPSHOT_VERSION, MemoryQueueManager  # noqa: E402
from storage.snapshot import load_snapshot, save_snapshot  # noqa: E402
from tests.conftest import PASSWORDS  # noqa: E402
from tests.live_server import GUNICORN, LiveServer, free_port  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

BENCH = Path(__file__).resolve().parent
POST_SCRIPT = BENCH / "lua" / "post.lua"
# A job of 300 bytes, as the calculation cluster's producers send them.
JOB = {
    "id": "job-000001",
    "timestamp": "2026-11-28T10:00:00Z",
    "status": "pending",
    "type": "moving_average",
    "owner": "desk-7",
    "date_range": {"start": "2026-01-02", "end": "2026-06-30"},
    "assets": ["AAPL", "MSFT", "GOOG", "AMZN", "NVDA"],
    "parameters": {"window": 20, "field": "close", "calendar": "XNYS", "note": "x" * 14},
}
JOB_BYTES = json.dumps(JOB, separators=(",", ":")).encode()
# Messages queued before a batch pull run, per second of it: more than the fastest batch pull takes,
# or the figure would be capped by the queue running empty (it was 120,000, the cap it then measured).
BATCH_PULL_PREFILL_PER_SECOND = 300_000


def ensure_installed(program, package):
    """Install program from Debian's packages if it is missing (as root), or stop with a clear message."""
    if shutil.which(program):
        return
    if os.geteuid() != 0:
        sys.exit(f"the benchmark needs {program}: apt-get install {package}")
    if subprocess.run(["apt-get", "install", "-y", "-qq", package], check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True)


def _milliseconds(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)


def wrk(url, seconds, body=None, user="manager", idempotent=False):
    """One wrk run: requests/s, p50 and p99 in ms, and the non-2xx count; with idempotent, each
    request carries a fresh Idempotency-Key."""
    env = dict(os.environ, AUTH_HEADER=_basic(user), BODY_FILE="", IDEMPOTENT="1" if idempotent else "0")
    with tempfile.NamedTemporaryFile(suffix=".json") as body_file:
        if body is not None:
            body_file.write(body)
            body_file.flush()
            env["BODY_FILE"] = body_file.name
        command = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", str(POST_SCRIPT), url]
        output = subprocess.run(
            command, env=env, capture_output=True, text=True, check=True, timeout=seconds + 60
        ).stdout
    figures = {"non_2xx": 0}
    for line in output.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            figures["requests_per_s"] = float(words[1])
        elif words[:1] == ["50%"]:
            figures["p50_ms"] = _milliseconds(words[1])
        elif words[:1] == ["99%"]:
            figures["p99_ms"] = _milliseconds(words[1])
        elif line.startswith("  Non-2xx"):
            figures["non_2xx"] = int(words[-1])
    return figures


def _basic(user):
    return "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()


def summarise(runs):
    """{figure: {median, min, max}} over a list of runs' {figure: value}."""
    return {
        key: {
            "median": statistics.median(run[key] for run in runs),
            "min": min(run[key] for run in runs),
            "max": max(run[key] for run in runs),
        }
        for key in runs[0]
    }


class Service:
    """The real service under gunicorn, with helpers to fill and read its queues."""

    def __init__(self, directory, threads=ServerConfig.threads, workers=1, redis_url=None, **persistence):
        self.server = LiveServer(
            directory,
            server={"threads": threads, "workers": workers},
            storage={"backend": "redis", "redis_url": redis_url} if redis_url else {},
            queues={"max_messages": 2_000_000, "max_request_bytes": 4_000_000},
            persistence={"interval_seconds": 3600, **persistence},
            logging={"level": "WARNING"},
        )
        self.server.start()
        self.session = self.server.session("admin")

    def url(self, path):
        return self.server.url(path)

    def reset(self, queue):
        self.session.delete(self.url(f"/queues/{queue}"))
        assert self.session.post(self.url("/queues"), json={"name": queue}).status_code == 201

    def info(self, queue):
        return self.session.get(self.url(f"/queues/{queue}")).json()

    def fill(self, queue, count, threads=4):
        """Push count jobs in batches of 100 from several connections at once."""
        body = b'{"messages":[' + b",".join([JOB_BYTES] * 100) + b"]}"
        batches = iter(range(count // 100))

        def pusher():
            session = self.server.session("admin")
            for _ in batches:
                session.post(
                    self.url(f"/queues/{queue}/push"), data=body, headers={"Content-Type": "application/json"}
                )

        workers = [threading.Thread(target=pusher) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def rss_bytes(self):
        (worker,) = self.server.worker_pids()
        for line in Path(f"/proc/{worker}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self):
        self.server.stop()


def measure(service, runs, seconds, path, body=None, counter=None, prefill=0):
    """wrk runs against path; with counter ("pushed_total" or "pulled_total"), messages/s too."""
    return summarise([measure_once(service, seconds, path, body, counter, prefill) for _ in range(runs)])


def measure_once(service, seconds, path, body=None, counter=None, prefill=0, idempotent=False):
    """The figures of one of measure()'s runs."""
    service.reset("q")
    if prefill:
        service.fill("q", prefill)
    before = service.info("q")[counter] if counter else 0
    figures = wrk(service.url(path), seconds, body, idempotent=idempotent)
    if counter:
        figures["messages_per_s"] = (service.info("q")[counter] - before) / seconds
    return figures


def baseline(workdir, runs, seconds, threads=ServerConfig.threads, workers=1):
    """The do-nothing endpoint under the service's gunicorn settings."""
    port, log = free_port(), workdir / f"baseline.{workers}.{threads}.log"
    process = subprocess.Popen(
        [GUNICORN, "-b", f"127.0.0.1:{port}", "-w", str(workers), "-k", "gthread", "--threads", str(threads),
         "--no-control-socket", "noop_app:app"],
        cwd=BENCH, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.post(f"http://127.0.0.1:{port}/noop", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        return summarise([wrk(f"http://127.0.0.1:{port}/noop", seconds, b'{"message":' + JOB_BYTES + b"}")
                          for _ in range(runs)])  # fmt: skip
    finally:
        process.terminate()
        process.wait(30)


def throughput_phases(workdir, runs, seconds):
    service = Service(workdir / "service")
    batch = b'{"messages":[' + b",".join([JOB_BYTES] * 100) + b"]}"
    single = b'{"message":' + JOB_BYTES + b"}"
    try:
        push, keyed = plain_and_keyed_pushes(service, runs, seconds, single)
        phases = {
            "push": push,
            "push_idempotency_key": keyed,
            "pull": measure(
                service, runs, seconds, "/queues/q/pull", None, "pulled_total", prefill=4000 * seconds
            ),
            "push_batch_100": measure(service, runs, seconds, "/queues/q/push", batch, "pushed_total"),
            "pull_batch_100": measure(
                service,
                runs,
                seconds,
                "/queues/q/pull?max=100",
                None,
                "pulled_total",
                prefill=BATCH_PULL_PREFILL_PER_SECOND * seconds,
            ),
            "mixed": mixed(service, runs, seconds, single),
        }
    finally:
        service.stop()
    return phases


def _consume(service, stop, consumed):
    session = service.server.session("manager")
    while not stop.is_set():
        response = session.post(service.url("/queues/q/pull?max=10&wait=1"))
        if response.status_code == 200:
            consumed.append(len(response.json()["messages"]))


def mixed(service, runs, seconds, single):
    """wrk pushes while 8 long-polling consumers (threads in this process) pull 10 at a time."""
    results = []
    for _ in range(runs):
        service.reset("q")
        stop, consumed = threading.Event(), []
        consumers = [threading.Thread(target=_consume, args=(service, stop, consumed)) for _ in range(8)]
        for thread in consumers:
            thread.start()
        figures = wrk(service.url("/queues/q/push"), seconds, single)
        stop.set()
        for thread in consumers:
            thread.join()
        figures["messages_per_s"] = sum(consumed) / seconds
        results.append(figures)
    return summarise(results)


# Single pushes by journal setting: (row, journal, fsync). Off first: it is what the others are
# compared with, and its runs alternate with theirs so that a slow moment of the machine hits all.
JOURNAL_ROWS = (
    ("push_journal_off", "off", "everysec"),
    ("push_journal_everysec", "on", "everysec"),
    ("push_journal_always", "on", "always"),
)


def plain_and_keyed_pushes(service, runs, seconds, body):
    """Single pushes without and with a fresh Idempotency-Key each, their runs alternating so that a
    slow moment of the machine hits both."""
    plain, keyed = [], []
    for _ in range(runs):
        plain.append(measure_once(service, seconds, "/queues/q/push", body, "pushed_total"))
        keyed.append(measure_once(service, seconds, "/queues/q/push", body, "pushed_total", idempotent=True))
    return summarise(plain), summarise(keyed)


def journal_phases(workdir, runs, seconds):
    single = b'{"message":' + JOB_BYTES + b"}"
    services = {}
    try:
        for row, journal, fsync in JOURNAL_ROWS:
            services[row] = Service(workdir / row, journal=journal, fsync=fsync)
        found = {row: [] for row in services}
        for _ in range(runs):
            for row, service in services.items():
                found[row].append(measure_once(service, seconds, "/queues/q/push", single, "pushed_total"))
    finally:
        for service in services.values():
            service.stop()
    return {row: summarise(figures) for row, figures in found.items()}


def journal_ratio(results):
    """Single push requests/s with the journal on (fsync everysec) ÷ with it off, in the same run."""
    journal = results["journal"]
    return (
        journal["push_journal_everysec"]["requests_per_s"]["median"]
        / journal["push_journal_off"]["requests_per_s"]["median"]
    )


def thread_phases(workdir, runs, seconds, counts):
    single = b'{"message":' + JOB_BYTES + b"}"
    found = {}
    for threads in counts:
        service = Service(workdir / f"threads-{threads}", threads=threads)
        try:
            push = measure(service, runs, seconds, "/queues/q/push", single, "pushed_total")
        finally:
            service.stop()
        found[threads] = {"push": push, "baseline": baseline(workdir, runs, seconds, threads)}
    return found


def redis_phases(workdir, runs, seconds, counts):
    """Single push and pull on the Redis backend with each count of workers (and with appendonly at 2),
    and the baseline with as many workers; each row on a fresh redis-server, stopped afterwards."""
    single = b'{"message":' + JOB_BYTES + b"}"
    rows = {}
    for workers, appendonly in [*((count, False) for count in counts), (2, True)]:
        name = f"workers_{workers}" + ("_appendonly_everysec" if appendonly else "")
        (workdir / name).mkdir()
        redis_server = RedisServer(workdir / name, appendonly=appendonly).start()
        try:
            if appendonly:  # RedisServer's appendonly fsyncs every write; everysec is Redis's default
                redis_server.client().config_set("appendfsync", "everysec")
            service = Service(workdir / name / "service", workers=workers, redis_url=redis_server.url)
            try:
                rows[name] = {
                    "workers": workers,
                    "appendonly": appendonly,
                    "push": measure(service, runs, seconds, "/queues/q/push", single, "pushed_total"),
                    "pull": measure(
                        service, runs, seconds, "/queues/q/pull", None, "pulled_total", prefill=4000 * seconds
                    ),
                }
            finally:
                service.stop()
        finally:
            redis_server.stop()
    return {
        "rows": rows,
        "baseline": {count: baseline(workdir, runs, seconds, workers=count) for count in counts},
    }


def memory_and_snapshot_phases(workdir, runs, seconds, sizes):
    """RSS per queued message, then p99 of pushes with the biggest queue, without and during snapshots."""
    directory = workdir / "memory"
    service = Service(directory)
    found = {}
    try:
        service.reset("big")
        service.reset("q")
        start_rss, filled = service.rss_bytes(), 0
        for size in sizes:
            service.fill("big", size - filled)
            filled = size
            found[f"rss_per_message_{size}"] = (service.rss_bytes() - start_rss) / size
        single = b'{"message":' + JOB_BYTES + b"}"
        found["push_without_snapshot"] = summarise(
            [wrk(service.url("/queues/q/push"), seconds, single) for _ in range(runs)]
        )
    finally:
        service.stop()  # writes the final snapshot of every message
    # The same data, now snapshotted every second: each push run changes the state, so one
    # snapshot of all the messages after another is written while the pushes are measured.
    service = Service(directory, interval_seconds=1)
    try:
        time.sleep(1.5)
        found["push_during_snapshot"] = summarise(
            [wrk(service.url("/queues/q/push"), seconds, single) for _ in range(runs)]
        )
    finally:
        service.stop()
    return found


def snapshot_times(workdir, count, runs):
    """Snapshot (copy + write) and restore (read + rebuild) of count messages, in this process."""
    manager = MemoryQueueManager()
    manager.create("big", count)
    for start in range(0, count, 1000):
        manager.push("big", [JOB_BYTES] * min(1000, count - start))
    path = workdir / "bench.pickle"
    saves, restores = [], []
    for _ in range(runs):
        started = time.perf_counter()
        state, _ = manager.snapshot()
        save_snapshot(path, state)
        saves.append({"seconds": time.perf_counter() - started})
        started = time.perf_counter()
        MemoryQueueManager.restore(load_snapshot(path, SNAPSHOT_VERSION, Queue.check_settings))
        restores.append({"seconds": time.perf_counter() - started})
    return {"snapshot": summarise(saves), "restore": summarise(restores), "file_bytes": path.stat().st_size}


def machine():
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    python, kernel = platform.python_version(), platform.release()
    return f"{cpu}, {os.cpu_count()} cores, {memory} GiB, Python {python}, Linux {kernel}"


def _fmt(figure):
    return f"{figure['median']:,.1f} ({figure['min']:,.1f}–{figure['max']:,.1f})"


def backend_rows(results):
    """Single push and pull side by side: the baseline, the memory backend, Redis by workers."""
    base, phases, redis = results["baseline"], results["phases"], results["redis"]

    def cells(figures):
        ratio = figures["requests_per_s"]["median"] / base["requests_per_s"]["median"]
        return f"{_fmt(figures['requests_per_s'])} | {_fmt(figures['p99_ms'])} | {ratio:.2f}"

    rows = [
        "| backend | workers | push requests/s | push p99 ms | push ÷ baseline "
        "| pull requests/s | pull p99 ms | pull ÷ baseline | do-nothing endpoint, same workers, requests/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| do-nothing endpoint (baseline) | 1 | {cells(base)} | {cells(base)} | |",
        f"| memory | 1 | {cells(phases['push'])} | {cells(phases['pull'])} | |",
    ]
    for row in redis["rows"].values():
        label = "redis, appendonly everysec" if row["appendonly"] else "redis"
        noop = redis["baseline"][row["workers"]]["requests_per_s"]
        rows.append(
            f"| {label} | {row['workers']} | {cells(row['push'])} | {cells(row['pull'])} | {_fmt(noop)} |"
        )
    return rows


def report(results):
    """Markdown: the figures, their ratio to the baseline, and the targets."""
    base = results["baseline"]
    rows = [
        "| phase | requests/s | messages/s | p50 ms | p99 ms | requests/s ÷ baseline |",
        "|---|---|---|---|---|---|",
    ]
    rows.append(
        f"| do-nothing endpoint (baseline) | {_fmt(base['requests_per_s'])} | | "
        f"{_fmt(base['p50_ms'])} | {_fmt(base['p99_ms'])} | 1.00 |"
    )
    for name, figures in {**results["phases"], **results["journal"]}.items():
        ratio = figures["requests_per_s"]["median"] / base["requests_per_s"]["median"]
        rows.append(f"| {name} | {_fmt(figures['requests_per_s'])} | {_fmt(figures['messages_per_s'])} | "
                    f"{_fmt(figures['p50_ms'])} | {_fmt(figures['p99_ms'])} | {ratio:.2f} |")  # fmt: skip
    threads = [
        "| threads | push requests/s | baseline requests/s | ratio | push p99 ms |",
        "|---|---|---|---|---|",
    ]
    for count, pair in results["threads"].items():
        push, noop = pair["push"]["requests_per_s"]["median"], pair["baseline"]["requests_per_s"]["median"]
        p99 = pair["push"]["p99_ms"]["median"]
        threads.append(f"| {count} | {push:,.0f} | {noop:,.0f} | {push / noop:.2f} | {p99:.1f} |")
    memory, times, count = results["memory"], results["snapshot_times"], results["snapshot_messages"]
    lines = [
        f"# Benchmark, {results['date']}",
        "",
        f"Machine: {results['machine']}. wrk: keep-alive, 16 connections, 1 thread, "
        f"{results['seconds']} s a run; each figure is the median of {results['runs']} runs (min–max). "
        "The service runs as deployed: gunicorn, 1 worker, gthread; Basic auth; the full request log; "
        "no journal unless named.",
        "",
        *rows,
        "",
        "Thread count (push vs the baseline with the same threads):",
        "",
        *threads,
        "",
        "Backends, single push and pull (the Redis backend on a fresh loopback redis-server for each row, "
        "without saves or appendonly unless named; 16 threads a worker; ratios to the baseline above, "
        "which has 1 worker):",
        "",
        *backend_rows(results),
        "",
        "| memory and snapshots | figure |",
        "|---|---|",
        *(
            f"| resident memory per queued message at {size:,} | {memory[f'rss_per_message_{size}']:,.0f} B |"
            for size in results["sizes"]
        ),  # fmt: skip
        f"| snapshot of {count:,} messages | {_fmt(times['snapshot']['seconds'])} s |",
        f"| restore of {count:,} messages | {_fmt(times['restore']['seconds'])} s |",
        f"| snapshot file | {times['file_bytes'] / 1e6:,.1f} MB |",
        f"| push p99, {count:,} queued, no snapshot | {_fmt(memory['push_without_snapshot']['p99_ms'])} ms |",
        f"| push p99 while snapshots are written | {_fmt(memory['push_during_snapshot']['p99_ms'])} ms |",
        "",
        "Good-request latency under attack (bench/attacks.py):",
        "",
        attacks.report(results["attacks"]),
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {name} | {value} | {'yes' if met else 'no'} |" for name, value, met in targets(results)),
    ]
    return "\n".join(lines) + "\n"


def targets(results):
    base = results["baseline"]["requests_per_s"]["median"]
    phases, memory, times = results["phases"], results["memory"], results["snapshot_times"]
    largest = results["sizes"][-1]
    p99_ratio = (
        memory["push_during_snapshot"]["p99_ms"]["median"]
        / memory["push_without_snapshot"]["p99_ms"]["median"]
    )
    found = []
    for name in ("push", "pull"):
        ratio = phases[name]["requests_per_s"]["median"] / base
        found.append((f"single {name} ≥ 0.8 × baseline", f"{ratio:.2f} ×", ratio >= 0.8))
        p99 = phases[name]["p99_ms"]["median"]
        found.append((f"single {name} p99 ≤ 15 ms", f"{p99:.1f} ms", p99 <= 15))
        to_base = p99 / results["baseline"]["p99_ms"]["median"]
        found.append((f"single {name} p99 ≤ 1.5 × baseline p99", f"{to_base:.2f} ×", to_base <= 1.5))
    keyed = (
        phases["push_idempotency_key"]["requests_per_s"]["median"]
        / phases["push"]["requests_per_s"]["median"]
    )
    found.append(("push with an Idempotency-Key ≥ 0.9 × plain push", f"{keyed:.2f} ×", keyed >= 0.9))
    pushed, pulled = (phases[f"{n}_batch_100"]["messages_per_s"]["median"] for n in ("push", "pull"))
    found.append(("batch push ≥ 100,000 messages/s", f"{pushed:,.0f}", pushed >= 100_000))
    found.append(("batch pull ≥ 200,000 messages/s", f"{pulled:,.0f}", pulled >= 200_000))
    per_message = memory[f"rss_per_message_{largest}"]
    found.append((f"≤ 400 B per queued message ({largest:,})", f"{per_message:,.0f} B", per_message <= 400))
    for step in ("snapshot", "restore"):
        seconds = times[step]["seconds"]["median"]
        found.append((f"{step} of {results['snapshot_messages']:,} ≤ 1 s", f"{seconds:.2f} s", seconds <= 1))
    found.append(("p99 during snapshots ≤ 2 × p99 without", f"{p99_ratio:.2f} ×", p99_ratio <= 2))
    ratio = journal_ratio(results)
    found.append(("push, journal on + fsync everysec ≥ 0.9 × journal off", f"{ratio:.2f} ×", ratio >= 0.9))
    found.extend(redis_targets(results["redis"]))
    for attack in ("wrong_password_flood", "slow_clients"):
        figures = results["attacks"][attack]
        median, ratio = figures["median_ms"], figures["median_ratio"]
        found.append((f"{attack}: median < 100 ms", f"{median:.1f} ms", median < 100))
        found.append((f"{attack}: median ≤ 2 × quiet", f"{ratio:.2f} ×", ratio <= 2))
    return found


def redis_targets(redis_results):
    """The Redis backend's targets that this run's worker counts allow: each count ≥ 0.6 × the
    do-nothing endpoint with as many workers, and 2 workers ≥ 1.5 × 1 worker."""
    rows, bases = redis_results["rows"], redis_results["baseline"]
    pushes = {}
    found = []
    for count, base in bases.items():
        row = rows.get(f"workers_{count}")
        if row is None:
            continue
        pushes[int(count)] = row["push"]["requests_per_s"]["median"]
        for name in ("push", "pull"):
            ratio = row[name]["requests_per_s"]["median"] / base["requests_per_s"]["median"]
            found.append((f"Redis, {count} workers: {name} ≥ 0.6 × baseline", f"{ratio:.2f} ×", ratio >= 0.6))
    if 1 in pushes and 2 in pushes:
        scale = pushes[2] / pushes[1]
        found.append(("Redis push, 2 workers ≥ 1.5 × 1 worker", f"{scale:.2f} ×", scale >= 1.5))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a second a phase, one run, small sizes (a smoke test)"
    )
    parser.add_argument(
        "--seconds", type=int, help="length of each wrk run, whole seconds (wrk takes no fraction)"
    )
    parser.add_argument("--runs", type=int, help="runs of each figure (the median is reported)")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="where the .md and .json go")
    parser.add_argument(
        "--journal-only", action="store_true", help="only single pushes by journal setting; prints the ratio"
    )
    args = parser.parse_args(argv)
    ensure_installed("wrk", "wrk")
    ensure_installed("redis-server", "redis-server")
    seconds = args.seconds or (1 if args.quick else 3)
    runs = args.runs or (1 if args.quick else 3)
    sizes = [10_000] if args.quick else [100_000, 1_000_000]
    if args.journal_only:
        with tempfile.TemporaryDirectory(prefix="queue-bench-") as work:
            results = {"journal": journal_phases(Path(work), runs, seconds)}
        for row, figures in results["journal"].items():
            print(f"{row}: {_fmt(figures['requests_per_s'])} requests/s, p99 {_fmt(figures['p99_ms'])} ms")
        print(f"journal on + fsync everysec ÷ journal off: {journal_ratio(results):.2f}")
        return 0
    with tempfile.TemporaryDirectory(prefix="queue-bench-") as work:
        workdir = Path(work)
        results = {
            "date": date.today().isoformat(),
            "machine": machine(),
            "seconds": seconds,
            "runs": runs,
            "sizes": sizes,
            "snapshot_messages": sizes[-1],
            "baseline": baseline(workdir, runs, seconds),
            "phases": throughput_phases(workdir, runs, seconds),
            "journal": journal_phases(workdir, runs, seconds),
            "threads": thread_phases(workdir, runs, seconds, [4, 16] if args.quick else [4, 8, 16, 32]),
            "redis": redis_phases(workdir, runs, seconds, [2] if args.quick else [1, 2, 4]),
            "memory": memory_and_snapshot_phases(workdir, runs, seconds, sizes),
            "snapshot_times": snapshot_times(workdir, sizes[-1], runs),
            "attacks": attacks.measure(workdir, seconds),
        }
    text = report(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{results['date']}.md").write_text(text)
    (args.out / f"{results['date']}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
