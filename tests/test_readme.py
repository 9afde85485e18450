"""The README's curl walk-through, run as written with bash against a live server with the demo
users: every curl line answers the status its comment gives."""

import re
import shutil
import subprocess

import pytest
import requests

from examples.producer import QUEUES
from tests.conftest import REPO
from tests.live_server import LiveServer, skip_without_route

pytestmark = pytest.mark.slow
README = (REPO / "README.md").read_text()
DEMO_ADMIN = ("admin", "admin-change-me")
# Each curl's status goes to a file and its body to stdout, so that `R=$(curl ... | python3 ...)` works.
RECORDING_CURL = """
curl() {
    local body status
    body=$(mktemp)
    status=$(command curl -s -o "$body" -w '%{http_code}' "$@")
    echo "$status" >> "$STATUSES"
    cat "$body"
    rm -f "$body"
}
"""


def block_under(heading):
    """The first ```sh block after the heading line."""
    after = README.split(f"\n{heading}\n", 1)[1]
    return after.split("```sh\n", 1)[1].split("\n```", 1)[0]


def expected_statuses(block):
    """The status each curl line's comment gives, in order."""
    statuses = []
    for line in block.splitlines():
        if "curl " in line and not line.lstrip().startswith("#"):
            found = re.search(r"\s#\s+(\d{3})\b", line)
            assert found, f"a curl line without its status: {line}"
            statuses.append(int(found.group(1)))
    return statuses


@pytest.fixture
def demo_server(tmp_path):
    """A live server with the README's demo users."""
    directory = tmp_path / "service"
    directory.mkdir()
    shutil.copy(REPO / "users.yaml", directory / "users.yaml")
    server = LiveServer(directory)
    server.start()
    yield server
    server.stop()


def run_blocks(server, tmp_path, blocks):
    statuses = tmp_path / "statuses"
    script = RECORDING_CURL + "\n".join(blocks)
    result = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "QUEUES_URL": server.base_url, "STATUSES": str(statuses)},
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [int(line) for line in statuses.read_text().split()]


def test_every_route_with_curl_runs_as_written(demo_server, tmp_path):
    block = block_under("## Every route with curl")
    assert block.startswith("Q=${QUEUES_URL:-http://127.0.0.1:7500}\n")
    assert run_blocks(demo_server, tmp_path, [block]) == expected_statuses(block)


def test_the_operators_routes_run_as_written_after_it(demo_server, tmp_path):
    skip_without_route(demo_server)
    first, operators = block_under("## Every route with curl"), block_under("### The operators' routes")
    statuses = run_blocks(demo_server, tmp_path, [first, operators])
    assert statuses == expected_statuses(first) + expected_statuses(operators)


def test_the_walk_through_creates_the_queues_as_the_producer_wants_them(demo_server, tmp_path):
    run_blocks(demo_server, tmp_path, [block_under("## Every route with curl")])
    for name, settings in QUEUES:
        info = requests.get(demo_server.url(f"/queues/{name}"), auth=DEMO_ADMIN, timeout=10).json()
        assert {key: info[key] for key in settings} == settings
