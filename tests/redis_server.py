"""A real redis-server for the Redis backend's tests: on a free loopback port, in a temporary folder."""

import ctypes
import os
import shutil
import signal
import subprocess
import time

import redis

from tests.live_server import free_port

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # If pytest itself is killed, the server must not outlive it.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class RedisServer:
    """redis-server on one port, stopped and started again on it; with appendonly, its data survives."""

    def __init__(self, directory, appendonly=False, env=None, args=()):
        self.binary = shutil.which("redis-server")
        assert self.binary, (
            "redis-server is not installed: `make test` installs it (apt-get install redis-server)"
        )
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.appendonly = appendonly
        self.env = {**os.environ, **(env or {})}
        self.args = list(args)
        self.process = None

    def start(self):
        command = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory)]
        command += ["--save", "", "--daemonize", "no", "--logfile", "redis.log"]
        command += (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(command, preexec_fn=_die_with_parent, stdout=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                assert time.monotonic() < deadline, f"redis-server did not answer on port {self.port}"
                assert self.process.poll() is None, f"redis-server exited with {self.process.returncode}"
                time.sleep(0.05)

    def client(self):
        return redis.Redis.from_url(self.url)

    def stop(self):
        """Stop the server (without appendonly, its data goes with it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
