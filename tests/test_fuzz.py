"""schemathesis against the live service: no 5xx, and no response that breaks the OpenAPI document."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, backend_sections
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow
SCHEMATHESIS = str(Path(sys.executable).with_name("st"))


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_schemathesis_finds_no_server_error_and_no_response_outside_the_document(request, tmp_path, backend):
    redis_server = request.getfixturevalue("redis_server") if backend == "redis" else None
    # Short waits and leases keep every generated long poll brief; the served document states them.
    server = LiveServer(
        tmp_path,
        queues={"max_wait_seconds": 1, "max_lease_seconds": 30, "max_messages": 50},
        # schemathesis sends wrong credentials on purpose; with the default throttle its own source
        # would soon get only 429s, and the routes behind authentication would go untested.
        auth={"max_failed_logins": 1_000_000},
        **backend_sections(backend, redis_server),
    )
    server.start()
    try:
        server.session().post(server.url("/queues"), json={"name": "jobs"})
        result = subprocess.run(
            [
                SCHEMATHESIS, "run", server.url("/openapi.yaml"),
                "--auth", f"admin:{PASSWORDS['admin']}",
                "--checks", "all",
                # The document cannot say that a message must match its queue's schema, or that a
                # dead-letter or redrive destination must exist, so a schema-valid request may rightly
                # be refused, and a 404 after a create may name that other queue. Its negative cases
                # "without Authorization" still carry --auth, and some lose their invalid part in
                # serialisation, so they are reported as accepted: the route tests refuse every bad
                # input instead.
                "--exclude-checks",
                "positive_data_acceptance,ensure_resource_availability,negative_data_rejection",
                "--max-examples", "10", "--max-time", "60", "--seed", "7",
                "--request-timeout", "10",
            ],
            capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path,
        )  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
