"""The command line, run as `python -m client` against a real server: output, errors, exit codes."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PASSWORDS, REPO

pytestmark = pytest.mark.slow


def cli(live, *args, user="admin", password=None, stdin=None):
    env = {**os.environ, "QUEUES_URL": live.base_url, "QUEUES_USER": user,
           "QUEUES_PASSWORD": password or PASSWORDS[user]}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "client", *args], cwd=REPO, env=env, input=stdin,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_create_push_pull_ack_delete(live, tmp_path):
    assert json.loads(cli(live, "create", "jobs", "--max", "500").stdout)["max_messages"] == 500
    assert "id" in json.loads(cli(live, "push", "jobs", '{"n": 0}').stdout)
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(1, 251)))
    pushed = json.loads(cli(live, "push", "jobs", "--file", str(lines)).stdout)
    assert pushed["pushed"] == 250
    assert json.loads(cli(live, "info", "jobs").stdout)["size"] == 251
    assert [q["name"] for q in json.loads(cli(live, "list").stdout)] == ["jobs"]
    assert json.loads(cli(live, "pull", "jobs").stdout)["message"] == {"n": 0}
    leased = json.loads(cli(live, "pull", "jobs", "--max", "2", "--lease", "30").stdout)
    assert [m["message"]["n"] for m in leased] == [1, 2]
    assert json.loads(cli(live, "ack", "jobs", *[m["receipt"] for m in leased]).stdout) == {"acked": 2}
    assert json.loads(cli(live, "delete", "jobs").stdout) == {"name": "jobs", "deleted_messages": 248}


def test_pull_of_an_empty_queue_prints_nothing_and_succeeds(live):
    cli(live, "create", "empty")
    result = cli(live, "pull", "empty", "--wait", "0.2")
    assert (result.returncode, result.stdout) == (0, "")
    cli(live, "delete", "empty")


@pytest.mark.parametrize(
    ("args", "options", "status", "code"),
    [
        (("info", "missing"), {}, 2, "queue_not_found"),
        (("list",), {"password": "wrong-password"}, 3, "unauthorized"),
        (("create", "x"), {"user": "manager"}, 3, "forbidden"),
        (("push", "tiny", '{"n": 2}'), {}, 4, "queue_full"),
        (("push", "tiny", "not json"), {}, 1, "input"),
    ],
)
def test_errors_give_a_line_on_stderr_and_their_exit_status(live, args, options, status, code):
    cli(live, "create", "tiny", "--max", "1")
    cli(live, "push", "tiny", '{"n": 1}')
    result = cli(live, *args, **options)
    assert result.returncode == status
    assert result.stderr.startswith(f"error: {code}") and result.stdout == ""
    assert "wrong-password" not in result.stderr + result.stdout
    assert PASSWORDS["admin"] not in result.stderr + result.stdout
