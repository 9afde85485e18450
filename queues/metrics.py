"""Prometheus metrics: request latency and errors per process, queues and snapshots read at scrape time.

The per-queue figures come from the backend's own totals (`backend.queues.list()`), so every worker and
every instance sharing a Redis reports the same, complete numbers. The per-request figures are
counted in each process; under gunicorn (which sets `PROMETHEUS_MULTIPROC_DIR` before this module
is imported) prometheus_client keeps them in files that each scrape adds up over all the workers.
"""

import logging
import os
import time
from datetime import datetime

from flask import g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from queues.errors import StorageUnavailable
from queues.queue_info import TOTALS

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the classic text format, which every Prometheus reads
# prometheus_client's own switch (not the service's configuration): set, the values live in files there.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# From a cached push (about 1 ms) to a long poll's `wait` (up to max_wait_seconds, 20 by default).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Label values stay few: a request that matched no route, or used an odd method, is lumped together.
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# QueueInfo's totals, each exposed as a counter labelled `queue`: (field, metric name, help).
_TOTAL_METRICS = {
    "pushed_total": ("queues_messages_pushed", "Messages ever pushed to the queue."),
    "pulled_total": ("queues_messages_pulled", "Messages handed out by pulls, redeliveries included."),
    "acked_total": ("queues_messages_acked", "Leased messages acknowledged."),
    "dead_lettered_total": ("queues_messages_dead_lettered", "Messages moved to the dead-letter queue."),
}
QUEUE_TOTALS = tuple((field, *_TOTAL_METRICS[field]) for field in TOTALS)


def _values_in_files():
    """Whether prometheus_client keeps metric values in PROMETHEUS_MULTIPROC_DIR (multiprocess mode)."""
    in_files = getattr(values.ValueClass, "_multiprocess", False)
    if os.environ.get(MULTIPROC_DIR_VARIABLE) and not in_files:
        # prometheus_client chose its value class when first imported, before the variable was set.
        log.warning(
            "%s was set after prometheus_client was imported; /metrics counts this process's requests only",
            MULTIPROC_DIR_VARIABLE,
        )
    return in_files


class StateCollector:
    """Gauges and counters of the shared state, read when scraped: the queues, and the snapshots."""

    def __init__(self, extensions):
        self._extensions = extensions

    def collect(self):
        try:
            infos = self._extensions["queues.backend"].queues.list()
        except StorageUnavailable:
            infos = None  # the rest of /metrics is still worth having while the storage is away
        up = GaugeMetricFamily("queues_storage_up", "1 if the queues' storage answered this scrape, else 0.")
        up.add_metric([], 0 if infos is None else 1)
        yield up
        if infos is not None:
            yield from _queue_families(infos)
        snapshotter = self._extensions["queues.backend"].snapshotter
        if snapshotter is not None:  # the memory backend only
            yield from _snapshot_families(snapshotter)


def _queue_families(infos):
    by_queue = ["queue"]
    depth = GaugeMetricFamily("queues_queue_depth", "Messages available to pull.", labels=by_queue)
    in_flight = GaugeMetricFamily(
        "queues_queue_in_flight", "Messages leased, not yet acked.", labels=by_queue
    )
    limit = GaugeMetricFamily("queues_queue_max_messages", "How many messages it may hold.", labels=by_queue)
    age = GaugeMetricFamily(
        "queues_oldest_message_age_seconds",
        "Age of the oldest available message (0 when none is available).",
        labels=by_queue,
    )
    waiting = GaugeMetricFamily(
        "queues_waiting_pulls", "Long polls waiting on the queue now, on this instance.", labels=by_queue
    )
    now = time.time()
    totals = [(field, CounterMetricFamily(name, text, labels=by_queue)) for field, name, text in QUEUE_TOTALS]
    for info in infos:
        labels = [info["name"]]
        depth.add_metric(labels, info["size"] - info["in_flight"])  # size counts leased messages too
        in_flight.add_metric(labels, info["in_flight"])
        limit.add_metric(labels, info["max_messages"])
        age.add_metric(labels, _age(info["oldest_enqueued_at"], now))
        waiting.add_metric(labels, info["waiting_pulls"])
        for field, family in totals:
            family.add_metric(labels, info[field])
    yield from (depth, in_flight, limit, age, waiting)
    yield from (family for _, family in totals)


def _age(timestamp, now):
    """Seconds since an ISO 8601 timestamp of QueueInfo (0 for None)."""
    return 0.0 if timestamp is None else max(0.0, now - datetime.fromisoformat(timestamp).timestamp())


def _snapshot_families(snapshotter):
    yield CounterMetricFamily(
        "queues_snapshot_failures", "Snapshots that could not be written.", value=snapshotter.failures
    )
    saved_at, duration = snapshotter.last_saved_at, snapshotter.last_duration_seconds
    if saved_at is not None:  # none written by this process yet
        yield GaugeMetricFamily(
            "queues_snapshot_last_success_timestamp_seconds",
            "When the last snapshot was written (Unix time).",
            value=saved_at,
        )
        yield GaugeMetricFamily(
            "queues_snapshot_last_duration_seconds",
            "How long writing the last snapshot took.",
            value=duration,
        )


class Metrics:
    """One app's metrics: the per-request counter and histogram, and the state collector."""

    def __init__(self, app):
        self.state = StateCollector(app.extensions)
        # In multiprocess mode each scrape reads the values from the files, so the metrics are
        # registered nowhere (registering them too would export them twice).
        self._registry = None if _values_in_files() else CollectorRegistry()
        self.errors = Counter(
            "queues_http_errors",
            "Error responses, by their JSON error code.",
            ["code"],
            registry=self._registry,
        )
        self.latency = Histogram(
            "queues_http_request_duration_seconds",
            "Time from a request's arrival to its response, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self._registry,
        )
        self.request_log_dropped = Counter(
            "queues_request_log_dropped",
            "Request log lines that could not be written (see /health while it lasts).",
            registry=self._registry,
        )
        if self._registry is not None:
            self._registry.register(self.state)
        self._write_failed = False
        self._latency_children = {}  # (method, route, status) -> child; skips labels()'s lock and checks

    def render(self):
        """Every metric, in Prometheus's text format (CONTENT_TYPE)."""
        registry = self._registry
        if registry is None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            registry.register(self.state)
        return generate_latest(registry)

    def start_request(self):
        g.metrics_started = time.perf_counter()

    def finish_request(self, response):
        """Record the request; a metric that cannot be written never fails the request."""
        try:
            self._record(response)
        except OSError as exc:
            # In multiprocess mode the values live in files, which a full disk or RLIMIT_FSIZE
            # can stop from growing; the request has been served and must not become a 500.
            if not self._write_failed:
                log.warning("metrics: cannot record requests (%s); /metrics will undercount", exc)
            self._write_failed = True
        return response

    def _record(self, response):
        """One latency observation, and the error count if errors.py answered with an error code."""
        # One proxy lookup each instead of one per attribute (about 1 µs apiece).
        state, req = g._get_current_object(), request._get_current_object()
        started = getattr(state, "metrics_started", None)
        if started is not None:  # None if a before_request hook failed before ours
            rule, method = req.url_rule, req.method
            if method not in KNOWN_METHODS:
                method = "other"
            key = (method, UNMATCHED_ROUTE if rule is None else rule.rule, response.status_code)
            child = self._latency_children.get(key)
            if child is None:
                child = self._latency_children[key] = self.latency.labels(*key)
            child.observe(time.perf_counter() - started)
        code = getattr(state, "error_code", None)
        if code is not None:
            self.errors.labels(code).inc()


def init_app(app):
    """Time every request of app and count its errors; app.extensions["queues.metrics"] renders them."""
    metrics = Metrics(app)
    app.extensions["queues.metrics"] = metrics
    app.before_request(metrics.start_request)
    app.after_request(metrics.finish_request)
