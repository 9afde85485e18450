"""A real gunicorn running the service, for end-to-end tests: start, stop, kill -9, restart."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORDS, REPO, write_config

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
START_SECONDS = 30


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """`gunicorn -c gunicorn.conf.py wsgi:app` with its own config, data and logs in directory."""

    def __init__(self, directory, **sections):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        server = {"host": "127.0.0.1", "port": self.port, **sections.pop("server", {})}
        logging = {"level": "INFO", **sections.pop("logging", {})}
        self.config = write_config(self.directory, server=server, logging=logging, **sections)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.starts = 0

    def start(self, wait=True):
        """Start gunicorn; with wait, return once /health answers (or fail with its stderr)."""
        self.starts += 1
        self.stderr_path = self.directory / f"stderr.{self.starts}.log"
        # Ours, not a temporary folder of gunicorn.conf.py's, which a kill -9 would leave behind.
        metrics = tempfile.mkdtemp(prefix="metrics.", dir=self.directory)
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [GUNICORN, "-c", "gunicorn.conf.py", "wsgi:app"],
                cwd=REPO,
                env={
                    **os.environ,
                    "QUEUES_CONFIG": str(self.config),
                    "PROMETHEUS_MULTIPROC_DIR": metrics,
                },
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        if wait:
            try:
                self.wait_healthy()
            except AssertionError:
                self.kill9()  # never leave a server behind that the caller cannot stop
                raise
        return self

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def wait_healthy(self, timeout=START_SECONDS):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.stderr()}")
            try:
                if requests.get(self.url("/health"), timeout=1).status_code in (200, 503):
                    return
            except requests.RequestException:
                pass  # not listening yet, or still restoring a large state
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not answer /health in {timeout} s:\n{self.stderr()}")

    def url(self, path):
        return self.base_url + path

    def session(self, user="admin"):
        """A keep-alive session with user's credentials."""
        session = requests.Session()
        session.auth = (user, PASSWORDS[user])
        return session

    def logged_request_headers(self, path):
        """The headers of each request to path in the request log, as far as it is written yet."""
        lines = (self.directory / "logs" / "requests.log").read_text().splitlines()
        entries = [json.loads(line) for line in lines]
        return [e["headers"] for e in entries if e["direction"] == "request" and e["path"] == path]

    def worker_pids(self):
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except FileNotFoundError:
            return []

    def stop(self, sig=signal.SIGTERM, timeout=40):
        """Send sig to the master and wait for it to exit; returns its exit status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"gunicorn did not stop within {timeout} s after {sig!r}") from None

    def kill9(self):
        """kill -9 the master and its worker at once (they form their own process group)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._wait_port_free()

    def _wait_port_free(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)


OPERATORS_ROUTE = "/queues/{name}/messages"


def skip_without_route(server, path=OPERATORS_ROUTE):
    """Skip a test of a route this server's OpenAPI document does not name yet: the server side of
    the operators' API (browse, purge, redrive, nack delays, idempotent pushes) is merged apart."""
    paths = requests.get(server.url("/openapi.yaml"), timeout=10).text
    if f"  {path}:" not in paths:
        pytest.skip(f"this server has no {path} yet (the operators' API of issue 11, merged separately)")
