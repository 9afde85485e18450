"""The users command: add, change, remove and list users without editing hashes by hand."""

import io
import os
import subprocess
import sys

import pytest
import yaml
from werkzeug.security import check_password_hash

from queues.users import UsersFileError, load_users, main
from tests.conftest import REPO


def run(argv, stdin="", monkeypatch=None):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(argv)


def test_add_stores_a_salted_hash_and_never_the_password(tmp_path, monkeypatch):
    path = tmp_path / "users.yaml"
    assert (
        run(
            ["--file", str(path), "add", "carol", "--role", "manager", "--password-stdin"],
            "s3cret!\n",
            monkeypatch,
        )
        == 0
    )
    user = load_users(path)["carol"]
    assert user.role == "manager" and check_password_hash(user.password_hash, "s3cret!")
    assert "s3cret!" not in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_add_of_an_existing_user_changes_role_and_password_and_keeps_others(tmp_path, monkeypatch):
    path = tmp_path / "users.yaml"
    run(["--file", str(path), "add", "carol", "--role", "manager", "--password-stdin"], "one\n", monkeypatch)
    run(["--file", str(path), "add", "dave", "--role", "admin", "--password-stdin"], "two\n", monkeypatch)
    run(["--file", str(path), "add", "carol", "--role", "admin", "--password-stdin"], "three\n", monkeypatch)
    users = load_users(path)
    assert users["carol"].role == "admin" and check_password_hash(users["carol"].password_hash, "three")
    assert check_password_hash(users["dave"].password_hash, "two")


def test_remove_and_list(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.yaml"
    run(["--file", str(path), "add", "carol", "--role", "manager", "--password-stdin"], "x\n", monkeypatch)
    run(["--file", str(path), "add", "dave", "--role", "admin", "--password-stdin"], "y\n", monkeypatch)
    assert run(["--file", str(path), "remove", "carol"], "", monkeypatch) == 0
    capsys.readouterr()
    run(["--file", str(path), "list"], "", monkeypatch)
    assert capsys.readouterr().out == "dave\tadmin\n"
    assert set(yaml.safe_load(path.read_text())["users"]) == {"dave"}


def test_errors_exit_non_zero_with_a_message(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.yaml"
    assert run(["--file", str(path), "remove", "ghost"], "", monkeypatch) == 1
    assert (
        run(["--file", str(path), "add", "x", "--role", "admin", "--password-stdin"], "\n", monkeypatch) == 1
    )
    assert "must not be empty" in capsys.readouterr().err


def test_runs_as_a_module_from_the_command_line(tmp_path):
    path = tmp_path / "users.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "queues.users",
            "--file",
            str(path),
            "add",
            "erin",
            "--role",
            "manager",
            "--password-stdin",
        ],
        input="pw-erin\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pw-erin" not in result.stdout + result.stderr
    assert check_password_hash(load_users(path)["erin"].password_hash, "pw-erin")


def add(path, name, monkeypatch, password="pw\n"):
    return run(
        ["--file", str(path), "add", name, "--role", "manager", "--password-stdin"], password, monkeypatch
    )


def test_rewriting_keeps_the_files_mode(tmp_path, monkeypatch):
    path = tmp_path / "users.yaml"
    add(path, "carol", monkeypatch)
    path.chmod(0o640)
    assert add(path, "dave", monkeypatch) == 0
    assert (path.stat().st_mode & 0o7777) == 0o640
    assert set(load_users(path)) == {"carol", "dave"}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_rewriting_as_root_keeps_the_files_owner(tmp_path, monkeypatch):
    path = tmp_path / "users.yaml"
    add(path, "carol", monkeypatch)
    os.chown(path, 65534, 65534)  # nobody, as a service user would own it
    assert add(path, "dave", monkeypatch) == 0
    assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534)


@pytest.mark.parametrize("name", ["", "a:b", "with space", "tab\tname", "x" * 65, "caf\u00e9", "new\nline"])
def test_names_outside_the_allowed_characters_are_refused(tmp_path, monkeypatch, capsys, name):
    path = tmp_path / "users.yaml"
    assert add(path, name, monkeypatch) == 1
    assert "is not allowed" in capsys.readouterr().err
    assert not path.exists()
    path.write_text(yaml.safe_dump({"users": {name: {"role": "admin", "password_hash": "x$y$z"}}}))
    with pytest.raises(UsersFileError, match="is not allowed"):
        load_users(path)


def test_allowed_names_are_accepted(tmp_path, monkeypatch):
    path = tmp_path / "users.yaml"
    for name in ("a", "ops.bot-1@example.com", "X_" + "y" * 62):
        assert add(path, name, monkeypatch) == 0
    assert len(load_users(path)) == 3


@pytest.mark.parametrize(
    "change",
    [["remove", "dave"], ["add", "dave", "--role", "manager", "--password-stdin"]],
    ids=["remove", "demote"],
)
def test_the_last_admin_cannot_be_removed_or_demoted(tmp_path, monkeypatch, capsys, change):
    path = tmp_path / "users.yaml"
    run(["--file", str(path), "add", "dave", "--role", "admin", "--password-stdin"], "y\n", monkeypatch)
    run(["--file", str(path), "add", "carol", "--role", "manager", "--password-stdin"], "x\n", monkeypatch)
    before = path.read_bytes()
    assert run(["--file", str(path), *change], "z\n", monkeypatch) == 1
    assert "'dave' is the last admin" in capsys.readouterr().err
    assert path.read_bytes() == before
    run(["--file", str(path), "add", "erin", "--role", "admin", "--password-stdin"], "w\n", monkeypatch)
    assert run(["--file", str(path), *change], "z\n", monkeypatch) == 0  # with another admin, it may go


def test_a_password_piped_with_a_windows_line_end_keeps_no_carriage_return(tmp_path, monkeypatch):
    path = tmp_path / "users.yaml"
    assert add(path, "carol", monkeypatch, password="s3cret\r\n") == 0
    assert check_password_hash(load_users(path)["carol"].password_hash, "s3cret")


def test_a_users_file_reached_through_a_symlink_is_rewritten_where_it_lives(tmp_path, monkeypatch):
    # The config may name a link (to a secrets folder): the link stays, the file it names changes.
    target = tmp_path / "secrets" / "users.yaml"
    target.parent.mkdir()
    add(target, "carol", monkeypatch)
    link = tmp_path / "users.yaml"
    link.symlink_to(target)
    assert add(link, "dave", monkeypatch) == 0
    assert link.is_symlink() and set(load_users(target)) == {"carol", "dave"}
