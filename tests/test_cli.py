"""The command line, run as `python -m client` against a real server: output, errors, exit codes."""

import json
import os
import subprocess
import sys

import pytest

from client.cli import _parser
from tests.conftest import PASSWORDS, REPO, eventually
from tests.live_server import skip_without_route

pytestmark = pytest.mark.slow


def cli(live, *args, user="admin", password=None, stdin=None, env=None):
    """Run the command line without a terminal (its own session), as user with QUEUES_PASSWORD."""
    env = env or {**os.environ, "QUEUES_URL": live.base_url, "QUEUES_USER": user,
                  "QUEUES_PASSWORD": password or PASSWORDS[user]}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "client", *args], cwd=REPO, env=env, input=stdin,
        capture_output=True, text=True, timeout=60, check=False, start_new_session=True,
    )  # fmt: skip


def out(live, *args, **options):
    """The JSON a command printed; fails with its stderr when it failed."""
    result = cli(live, *args, **options)
    assert result.returncode == 0, f"{args}: exit {result.returncode}: {result.stderr}"
    return json.loads(result.stdout)


def env_without_password(live):
    env = {**os.environ, "QUEUES_URL": live.base_url, "QUEUES_USER": "admin"}
    env.pop("QUEUES_PASSWORD", None)
    return env


def jsonl(path, messages):
    path.write_text("".join((m if isinstance(m, str) else json.dumps(m)) + "\n" for m in messages))
    return str(path)


def test_create_push_pull_ack_delete(live, tmp_path):
    assert out(live, "create", "jobs", "--max", "500")["max_messages"] == 500
    assert "id" in out(live, "push", "jobs", '{"n": 0}')
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(1, 251)))
    pushed = out(live, "push", "jobs", "--file", str(lines))
    assert pushed["pushed"] == 250
    assert out(live, "info", "jobs")["size"] == 251
    assert [q["name"] for q in out(live, "list")] == ["jobs"]
    assert out(live, "pull", "jobs")["message"] == {"n": 0}
    leased = out(live, "pull", "jobs", "--max", "2", "--lease", "30")
    assert [m["message"]["n"] for m in leased] == [1, 2]
    assert out(live, "ack", "jobs", *[m["receipt"] for m in leased]) == {"acked": 2}
    assert out(live, "delete", "jobs") == {"name": "jobs", "deleted_messages": 248}


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


JOB = {"id": "j", "timestamp": "2026-11-28T10:00:00Z", "status": "pending",
       "date_range": {"start": "2026-01-01", "end": "2026-02-01"}, "assets": ["AAPL"]}  # fmt: skip


def test_an_invalid_message_prints_the_servers_details(live):
    cli(live, "create", "typed", "--schema", "job")
    result = cli(live, "push", "typed", json.dumps({**JOB, "date_range": {"start": "2026-13-01"}}))
    assert result.returncode == 1 and result.stderr.startswith("error: invalid_message")
    assert "message 0: date_range" in result.stderr
    cli(live, "delete", "typed")


def test_push_file_names_the_invalid_line_and_how_many_went_in(live, tmp_path):
    cli(live, "create", "typed", "--schema", "job")
    messages = [{**JOB, "id": f"j{n}"} for n in range(150)]
    messages[123] = {**JOB, "status": "lost"}
    result = cli(live, "push", "typed", "--file", jsonl(tmp_path / "jobs.jsonl", messages))
    assert result.returncode == 1 and result.stdout == ""
    assert "line 124: status" in result.stderr
    assert "pushed 100 message(s) before line 101" in result.stderr
    assert out(live, "info", "typed")["size"] == 100
    cli(live, "delete", "typed")


def test_push_file_names_a_line_that_is_not_json(live, tmp_path):
    cli(live, "create", "plain")
    messages = [{"n": n} for n in range(250)]
    messages[206] = '{"n": 206,'
    result = cli(live, "push", "plain", "--file", jsonl(tmp_path / "plain.jsonl", messages))
    assert result.returncode == 1
    assert result.stderr.startswith("error: input: line 207: not JSON")
    assert "pushed 200 message(s) before line 207" in result.stderr
    cli(live, "delete", "plain")


def test_push_file_run_again_after_a_fix_pushes_each_line_once(live, tmp_path):
    skip_without_route(live)
    cli(live, "create", "again")
    messages = [{"n": n} for n in range(250)]
    path = tmp_path / "again.jsonl"
    jsonl(path, [*messages[:180], "not json", *messages[181:]])
    assert cli(live, "push", "again", "--file", str(path)).returncode == 1
    jsonl(path, messages)
    assert out(live, "push", "again", "--file", str(path))["pushed"] == 250
    pulled = [m for _ in range(3) for m in out(live, "pull", "again", "--max", "100")]
    assert [m["message"]["n"] for m in pulled] == list(range(250))
    cli(live, "delete", "again")


def test_without_a_password_or_a_terminal_it_says_where_the_password_comes_from(live):
    result = cli(live, "list", env=env_without_password(live))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == "error: no password: set QUEUES_PASSWORD or use --password-stdin\n"


def test_password_stdin_reads_the_password_from_a_pipe(live):
    result = cli(
        live, "--password-stdin", "list", env=env_without_password(live), stdin=PASSWORDS["admin"] + "\n"
    )
    assert result.returncode == 0 and isinstance(json.loads(result.stdout), list)


def test_help_names_the_environment_variables(live):
    shown = cli(live, "--help").stdout
    assert all(name in shown for name in ("QUEUES_URL", "QUEUES_USER", "QUEUES_PASSWORD"))


def test_health_needs_no_credentials(live):
    result = cli(live, "health", env={**os.environ, "QUEUES_URL": live.base_url})
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "ok"


def test_extend_gives_the_lease_its_new_expiry(live):
    cli(live, "create", "held")
    cli(live, "push", "held", '{"n": 1}')
    leased = out(live, "pull", "held", "--lease", "60")
    extended = out(live, "extend", "held", leased["receipt"], "--lease", "300")
    assert extended["lease_expires_at"] > leased["lease_expires_at"]
    cli(live, "delete", "held")


def test_browse_purge_nack_and_redrive_commands(live):
    skip_without_route(live)
    cli(live, "create", "ops.dead")
    cli(live, "create", "ops", "--max-deliveries", "1", "--dead-letter-queue", "ops.dead")
    cli(live, "push", "ops", '{"n": 1}')
    assert out(live, "browse", "ops")["total"] == 1
    leased = out(live, "pull", "ops", "--lease", "30")
    assert (
        cli(live, "nack", "ops", leased["receipt"], "--delay", "5", "--reason", "feed down").returncode == 0
    )
    dead = out(live, "browse", "ops.dead")["messages"][0]
    assert dead["dead_letter"]["reason"] == "feed down"
    assert out(live, "redrive", "ops.dead", "--max", "5")["moved"] == 1
    assert out(live, "purge", "ops") == {"name": "ops", "purged_messages": 1}
    cli(live, "delete", "ops")
    cli(live, "delete", "ops.dead")


def test_a_single_push_sends_the_key_it_is_given(live):
    cli(live, "create", "keyed")
    assert cli(live, "push", "keyed", '{"n": 1}', "--key", "order-7").returncode == 0
    eventually(
        lambda: (
            [h.get("Idempotency-Key") for h in live.logged_request_headers("/queues/keyed/push")]
            == ["order-7"]
        )
    )
    cli(live, "delete", "keyed")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ack", "jobs", "-abc", "_def", "-ghi"], {"receipts": ["-abc", "_def", "-ghi"]}),
        (["nack", "jobs", "-abc", "--delay", "5", "--reason", "feed down"], {"receipt": "-abc", "delay": 5}),
        (["extend", "jobs", "--lease", "60", "-abc"], {"receipt": "-abc", "lease": 60}),
    ],
)
def test_a_receipt_that_begins_with_a_dash_is_read_as_a_receipt(argv, expected):
    args = vars(_parser("queues-client").parse_args(argv))
    assert {key: args[key] for key in expected} == expected
