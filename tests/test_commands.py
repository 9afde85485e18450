"""The console commands: `pip install -e .` (the Makefile's install) puts queues-client and queues-users
on a venv's PATH, and they work from any folder, without a terminal too."""

import json
import os
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import PASSWORDS, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory):
    """A fresh venv with the project installed as the Makefile does; the requirements come from the
    test run's own environment (a .pth file), so that nothing else is downloaded."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True, timeout=300, capture_output=True)
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (venv / site / "requirements.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def run(command, *args, cwd, env=None, stdin=None):
    """Run a console command in cwd, without a controlling terminal."""
    if env is None:  # none of the QUEUES_ variables of whoever runs the tests
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUES_")}
    return subprocess.run(
        [str(command), *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
        timeout=60, check=False, start_new_session=True,
    )  # fmt: skip


def test_the_client_command_works_from_another_folder(venv_bin, live, tmp_path):
    env = {
        **os.environ,
        "QUEUES_URL": live.base_url,
        "QUEUES_USER": "admin",
        "QUEUES_PASSWORD": PASSWORDS["admin"],
    }
    result = run(venv_bin / "queues-client", "create", "anywhere", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "anywhere"
    assert run(venv_bin / "queues-client", "delete", "anywhere", cwd=tmp_path, env=env).returncode == 0


def test_the_users_command_works_from_another_folder(venv_bin, tmp_path):
    users = tmp_path / "users.yaml"
    added = run(venv_bin / "queues-users", "--file", str(users), "add", "bob", "--role", "manager",
                "--password-stdin", cwd=tmp_path, stdin="b0b-secret\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = run(venv_bin / "queues-users", "--file", str(users), "list", cwd=tmp_path)
    assert listed.stdout == "bob\tmanager\n"


def test_the_users_command_without_a_terminal_says_to_use_password_stdin(venv_bin, tmp_path):
    users = tmp_path / "u.yaml"
    result = run(venv_bin / "queues-users", "--file", str(users), "add", "bob", "--role", "admin",
                 cwd=tmp_path, stdin="")  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == "error: no terminal to ask for the password: use --password-stdin\n"
    assert not users.exists()


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("queues-client", ["QUEUES_URL", "QUEUES_USER", "QUEUES_PASSWORD"]),
        ("queues-users", ["QUEUES_CONFIG"]),
    ],
)
def test_help_names_the_environment_variables(venv_bin, tmp_path, command, names):
    shown = run(venv_bin / command, "--help", cwd=tmp_path)
    assert shown.returncode == 0 and all(name in shown.stdout for name in names)
    assert shown.stdout.startswith(f"usage: {command} ")
