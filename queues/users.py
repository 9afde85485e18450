"""The users file: YAML of names, roles and salted password hashes, and the command that edits it.

python -m queues.users add NAME --role manager      # prompts for the password
python -m queues.users remove NAME
python -m queues.users list
"""

import argparse
import getpass
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from werkzeug.security import generate_password_hash

from queues.config import ConfigError, load_config

ROLES_WITH_ACCESS = ("admin", "manager")
# No ':' (Basic credentials split on the first one), no spaces or control characters, never empty.
USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class UsersFileError(Exception):
    """A users file that cannot be read or does not have the documented shape."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


def load_users(path):
    """Read the users file into {name: User}; raises UsersFileError naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"{path}: cannot read the users file: {exc}") from exc
    entries = data.get("users") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise UsersFileError(f"{path}: expected a top-level 'users:' mapping")
    users = {}
    for name, entry in entries.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("role"), str)
            and isinstance(entry.get("password_hash"), str)
        ):
            raise UsersFileError(f"{path}: user {name!r} needs a 'role' and a 'password_hash' string")
        name = str(name) if type(name) is int else name  # YAML reads `1234:` as a number
        check_user_name(name, path)
        users[name] = User(name, entry["role"], entry["password_hash"])
    return users


def check_user_name(name, path):
    """Raise UsersFileError unless name matches USER_NAME."""
    if not (isinstance(name, str) and USER_NAME.fullmatch(name)):
        raise UsersFileError(
            f"{path}: user name {name!r} is not allowed: expected 1 to 64 of A-Z a-z 0-9 _ . @ -"
        )


def save_users(path, users):
    """Write {name: User} to path atomically, so a running server never reads half a file.

    A file that exists keeps its owner, group and mode (the service's user must still read it);
    a new one is 0600, owned by whoever runs this. A symlink stays: the file it names is replaced.
    """
    path = Path(path).resolve()
    data = {"users": {u.name: {"role": u.role, "password_hash": u.password_hash} for u in users.values()}}
    try:
        before = path.stat()
    except FileNotFoundError:
        before = None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yaml.safe_dump(data, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
            if before is None:
                os.fchmod(out.fileno(), 0o600)
            else:
                _keep_owner_and_mode(out.fileno(), before, path)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _keep_owner_and_mode(fd, before, path):
    if (before.st_uid, before.st_gid) != (os.getuid(), os.getgid()):
        try:
            os.fchown(fd, before.st_uid, before.st_gid)
        except PermissionError as exc:
            raise UsersFileError(
                f"{path}: cannot keep its owner {before.st_uid}:{before.st_gid}; run as that user or root"
            ) from exc
    os.fchmod(fd, before.st_mode & 0o7777)


def _read_password(from_stdin):
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")  # a file written on Windows ends lines in \r\n
    try:
        # getpass asks on the controlling terminal; without one it would read stdin, and warn.
        with open("/dev/tty"):
            pass
        password = getpass.getpass("Password: ")
        repeated = getpass.getpass("Repeat password: ")
    except (OSError, EOFError):
        raise UsersFileError("no terminal to ask for the password: use --password-stdin") from None
    if password != repeated:
        raise UsersFileError("the passwords do not match")
    return password


def _parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n")[0],
        epilog="environment:\n  QUEUES_CONFIG  the config file whose [auth] users_file is edited\n"
        "                 (default: config.ini beside the code); --file overrides it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--file", help="users file (default: [auth] users_file of the config)")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a user, or change one's role and password")
    add.add_argument("name")
    add.add_argument("--role", required=True, help="admin, manager, or any other (no access)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    commands.add_parser("remove", help="remove a user").add_argument("name")
    commands.add_parser("list", help="list users and roles")
    return parser


def _has_admin(users):
    return any(user.role == "admin" for user in users.values())


def main(argv=None, prog="queues-users"):
    """Run the users command; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    try:
        path = Path(args.file) if args.file else load_config().auth.users_file
        users = load_users(path) if path.exists() or args.command != "add" else {}
        had_admin = _has_admin(users)
        if args.command == "list":
            for user in sorted(users.values(), key=lambda u: u.name):
                print(f"{user.name}\t{user.role}")
            return 0
        if args.command == "remove":
            if users.pop(args.name, None) is None:
                raise UsersFileError(f"{path}: no user {args.name!r}")
        else:
            check_user_name(args.name, path)
            password = _read_password(args.password_stdin)
            if not password:
                raise UsersFileError("the password must not be empty")
            users[args.name] = User(args.name, args.role, generate_password_hash(password))
        if had_admin and not _has_admin(users):
            # Only an admin can create or delete queues, and nobody could then by the API.
            raise UsersFileError(f"{path}: {args.name!r} is the last admin; add another admin first")
        save_users(path, users)
    except (ConfigError, UsersFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: {args.command} {args.name}: done")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m queues.users"))
