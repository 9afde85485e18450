"""deploy/logrotate/queues, run with logrotate -f against a live service under load: the service
goes on writing into the new file and no line is lost."""

import json
import shutil
import subprocess
import threading

import pytest

from tests.conftest import REPO
from tests.live_server import LiveServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("logrotate") is None, reason="needs logrotate (make system-packages)"),
]
SHIPPED = REPO / "deploy" / "logrotate" / "queues"
REQUESTS = 400


def local_copy(directory, log_path):
    """The shipped file for this log file and the user running the tests: the path swapped, the
    service user's `su` and `create` owner left out."""
    text = SHIPPED.read_text()
    assert "/var/log/queues/*.log {" in text and "    create 0640 queues queues\n" in text
    text = text.replace("/var/log/queues/*.log", str(log_path))
    text = text.replace("    create 0640 queues queues\n", "    create 0640\n").replace(
        "    su queues queues\n", ""
    )
    path = directory / "logrotate.conf"
    path.write_text(text)
    return path


def test_after_a_forced_rotation_the_service_writes_the_new_file_and_loses_no_line(tmp_path):
    server = LiveServer(tmp_path / "service")
    server.start()
    log = server.directory / "logs" / "requests.log"
    conf = local_copy(tmp_path, log)
    session = server.session()
    halfway = threading.Event()

    def load():
        for n in range(REQUESTS):
            session.get(server.url("/queues"), headers={"X-Request-ID": f"req-{n}"})
            if n == REQUESTS // 2:
                halfway.set()

    loader = threading.Thread(target=load)
    loader.start()
    try:
        assert halfway.wait(60)
        rotated = subprocess.run(
            ["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert rotated.returncode == 0, rotated.stderr
    finally:
        loader.join(120)
        server.stop()  # flushes the request log
    old = log.with_name("requests.log.1")
    assert old.exists() and log.exists()
    entries = [json.loads(line) for path in (old, log) for line in path.read_text().splitlines()]
    ids = sorted((e["request_id"], e["direction"]) for e in entries if e["request_id"].startswith("req-"))
    assert ids == sorted((f"req-{n}", d) for n in range(REQUESTS) for d in ("request", "response"))
    after = [json.loads(line)["request_id"] for line in log.read_text().splitlines()]
    assert f"req-{REQUESTS - 1}" in after
