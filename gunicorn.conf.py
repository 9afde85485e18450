"""gunicorn settings, taken from the service's configuration: `gunicorn -c gunicorn.conf.py wsgi:app`.

`[server] workers` processes: one with the memory backend, because the queues live in its memory;
any number with Redis. Many threads in each, because pulls may wait.
"""

import atexit
import gc
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

# gunicorn reads this file before it puts the working directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# /metrics adds up the workers' request metrics from files in this folder (prometheus_client's
# multiprocess mode). prometheus_client reads the variable when first imported, as the app's import
# below does, so it is set first, here in the master; the workers inherit it. Fresh for each start.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    _METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="queues-metrics-")
    _MASTER = os.getpid()

    def _remove_metrics_dir():
        # atexit also runs in each worker as it exits (gunicorn ends them with sys.exit): only the
        # master removes the folder. Also covers a config error and `--print-config`.
        if os.getpid() == _MASTER:
            shutil.rmtree(_METRICS_DIR, ignore_errors=True)

    atexit.register(_remove_metrics_dir)

from prometheus_client import multiprocess  # noqa: E402

from app import shutdown  # noqa: E402
from queues.config import ConfigError, load_config  # noqa: E402

try:
    _config = load_config()
except ConfigError as exc:
    print(f"queue service cannot start: {exc}", file=sys.stderr)
    sys.exit(2)

bind = f"{_config.server.host}:{_config.server.port}"
workers = _config.server.workers
# gthread, reading each request in the event loop before a thread is given (see queues/http_worker.py).
worker_class = "queues.http_worker.RequestBufferingWorker"
threads = _config.server.threads
# The app (and its snapshot thread) must be built in the worker, not in the master.
preload_app = False
# Long polls end as soon as a stop begins (see post_worker_init); this is only a backstop.
graceful_timeout = 30
# Several instances may run on one machine (tests, blue/green); none needs gunicorn's control socket.
control_socket_disable = True
accesslog = None
# Forwarded headers are trusted as [server] trusted_proxies says (werkzeug's ProxyFix in the app),
# not also by gunicorn, which by default takes X-Forwarded-Proto from any client on loopback.
forwarded_allow_ips = ""
# The worker refuses a head over 64 KB itself, with the contract's JSON 400 (queues.http_worker);
# gunicorn's lower limits would refuse long request lines and fields first, with a 414 or a 431.
limit_request_line = 0
limit_request_fields = 32768
limit_request_field_size = 65536
errorlog = "-"


def post_worker_init(worker):
    """Make SIGTERM also end waiting long polls, so a graceful stop need not wait them out."""
    begin_graceful_stop = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        begin_graceful_stop(signum, frame)
        worker.wsgi.extensions["queues.backend"].queues.release_waits()

    signal.signal(signal.SIGTERM, on_sigterm)
    # The app's own objects (modules, Flask, schemas: a few hundred thousand) live as long as the
    # worker; leaving them out of the garbage collector's full passes shortens every pass, each of
    # which holds the GIL and so stalls every request thread at once (a p99 cost).
    gc.freeze()


def worker_exit(server, worker):
    """Write the final snapshot when the worker stops (SIGTERM, SIGINT, or a lost master)."""
    app = getattr(worker, "wsgi", None)  # unset when the app failed to load
    if app is not None:
        shutdown(app)


def child_exit(server, worker):
    """Drop a dead worker's live gauges from /metrics (its counters stay: what it counted happened)."""
    multiprocess.mark_process_dead(worker.pid)
