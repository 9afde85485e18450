"""The command line on QueueClient (`queues-client`, or `python -m client`): for admin scripts and people.

Output is JSON on stdout; an error is a line on stderr, `error: CODE: MESSAGE`, then one indented line
per item of the server's details, with the exit status of EXIT_CODES.
"""

import argparse
import getpass
import json
import os
import re
import sys

from client.api import QueueClient
from client.errors import QueueError
from client.push_file import PartialPush, push_file

DEFAULT_URL = "http://127.0.0.1:7500"
ENVIRONMENT = f"""environment:
  QUEUES_URL       the service's URL (default {DEFAULT_URL}); --url overrides it
  QUEUES_USER      the user to act as; --user overrides it
  QUEUES_PASSWORD  that user's password; without it, --password-stdin reads it from the first line of
                   stdin, else it is asked for on the terminal (never give it as an argument)
"""
EXIT_CODES = {
    "queue_not_found": 2,
    "unauthorized": 3,
    "forbidden": 3,
    "too_many_requests": 3,
    "queue_full": 4,
    "queue_exists": 4,
    "queue_in_use": 4,
    "receipt_invalid": 4,
    "idempotency_key_reused": 4,
    "storage_unavailable": 5,
    "unreachable": 5,
}
OTHER_ERROR = 1


class _NoPassword(Exception):
    """No password in the environment, none on stdin, and no terminal to ask on."""


def _add_commands(commands):
    commands.add_parser("health", help="the service's /health (no credentials; exit 5 when degraded)")
    commands.add_parser("list", help="list the queues")
    create = commands.add_parser("create", help="create a queue")
    create.add_argument("name")
    create.add_argument("--max", type=int, dest="max_messages")
    create.add_argument("--schema", choices=["job", "result"])
    create.add_argument("--max-deliveries", type=int)
    create.add_argument("--dead-letter-queue")
    for name, text in (
        ("delete", "delete a queue and its messages"),
        ("info", "show a queue"),
        ("purge", "remove every message of a queue, leased ones included (admin)"),
    ):
        commands.add_parser(name, help=text).add_argument("name")
    push = commands.add_parser("push", help="push one message, or many from a JSON Lines file")
    push.add_argument("name")
    source = push.add_mutually_exclusive_group(required=True)
    source.add_argument("message", nargs="?", help="one message, as a JSON object")
    source.add_argument("--file", help="a JSON Lines file ('-' for stdin); safe to run again after a failure")
    push.add_argument("--key", help="the Idempotency-Key of a single push (default: a fresh one)")
    pull = commands.add_parser("pull", help="pull (prints nothing when no message came)")
    pull.add_argument("name")
    pull.add_argument("--max", type=int)
    pull.add_argument("--wait", type=float)
    pull.add_argument("--lease", type=int)
    browse = commands.add_parser("browse", help="list a queue's messages without taking any")
    browse.add_argument("name")
    browse.add_argument("--limit", type=int)
    browse.add_argument("--offset", type=int)
    browse.add_argument("--leased", action="store_true", help="the in-flight messages instead")
    redrive = commands.add_parser("redrive", help="move dead letters back to their queues (admin)")
    redrive.add_argument("name", help="the dead-letter queue")
    redrive.add_argument("--max", type=int, help="move at most this many")
    redrive.add_argument("--to", help="move them all to this queue instead")
    ack = commands.add_parser("ack", help="acknowledge leased messages")
    ack.add_argument("name")
    ack.add_argument("receipts", nargs="+")
    nack = commands.add_parser("nack", help="give a leased message back")
    nack.add_argument("name")
    nack.add_argument("receipt")
    nack.add_argument("--delay", type=int, help="keep it hidden this many more seconds")
    nack.add_argument("--reason", help="why (kept with the message)")
    extend = commands.add_parser("extend", help="extend a lease")
    extend.add_argument("name")
    extend.add_argument("receipt")
    extend.add_argument("--lease", type=int, required=True, help="seconds from now")
    for parser in (ack, nack, extend):
        _read_dashes_as_receipts(parser)


def _read_dashes_as_receipts(parser):
    """Let a receipt begin with '-' (one in 64 does): argparse reads an argument that starts with '-'
    and names no option as a value only when it looks like a negative number, so widen what looks
    like one. Done after the options are added, which are still recognised by name first."""
    parser._negative_number_matcher = re.compile(r"^-.+$")


def _parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The queue service's command line.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=os.environ.get("QUEUES_URL", DEFAULT_URL), help="or QUEUES_URL")
    parser.add_argument("--user", default=os.environ.get("QUEUES_USER"), help="or QUEUES_USER")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def _push(client, args):
    if args.file:
        if args.key:
            raise ValueError("--key is for a single push: push --file derives its keys from the file")
        return push_file(client, args.name, args.file)
    return {"id": client.push(args.name, json.loads(args.message), key=args.key)}


COMMANDS = {
    "list": lambda c, a: c.list_queues(),
    "create": lambda c, a: c.create_queue(
        a.name, a.max_messages, a.schema, a.max_deliveries, a.dead_letter_queue
    ),
    "delete": lambda c, a: {"name": a.name, "deleted_messages": c.delete_queue(a.name)},
    "info": lambda c, a: c.get_queue(a.name),
    "purge": lambda c, a: {"name": a.name, "purged_messages": c.purge(a.name)},
    "push": _push,
    "pull": lambda c, a: c.pull(a.name, max=a.max, wait=a.wait, lease=a.lease),
    "browse": lambda c, a: c.browse(a.name, limit=a.limit, offset=a.offset, leased=a.leased),
    "redrive": lambda c, a: c.redrive(a.name, max=a.max, to=a.to),
    "ack": lambda c, a: {"acked": c.ack(a.name, a.receipts)},
    "nack": lambda c, a: c.nack(a.name, a.receipt, delay=a.delay, reason=a.reason),
    "extend": lambda c, a: c.extend(a.name, a.receipt, a.lease),
}


def _password(args):
    """From QUEUES_PASSWORD, else stdin's first line with --password-stdin, else the terminal."""
    if os.environ.get("QUEUES_PASSWORD"):
        return os.environ["QUEUES_PASSWORD"]
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        # getpass asks on the controlling terminal; without one it would read stdin, and warn.
        with open("/dev/tty"):
            pass
        return getpass.getpass(f"Password for {args.user}: ")
    except (OSError, EOFError):
        raise _NoPassword from None


def _detail_line(detail):
    """One item of an error's details as text: `line 7: date_range/start: must be a date`."""
    if not isinstance(detail, dict):
        return json.dumps(detail)
    where = f"line {detail['line']}" if "line" in detail else f"message {detail.get('index', '?')}"
    path = detail.get("path") or "(the message)"
    rest = {k: v for k, v in detail.items() if k not in ("line", "index", "path", "problem")}
    return f"{where}: {path}: {detail.get('problem', '')}" + (f" {json.dumps(rest)}" if rest else "")


def _report(exc):
    """Print a QueueError or an input error on stderr; returns the exit status."""
    if isinstance(exc, QueueError):
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        for detail in exc.details or []:
            print(f"  {_detail_line(detail)}", file=sys.stderr)
        return EXIT_CODES.get(exc.code, OTHER_ERROR)
    print(f"error: input: {exc}", file=sys.stderr)
    return OTHER_ERROR


def _run(args):
    if args.command == "health":
        with QueueClient(args.url, None, None) as client:
            health = client.health()
        return health, 0 if health.get("status") == "ok" else EXIT_CODES["storage_unavailable"]
    if args.password_stdin and getattr(args, "file", None) == "-":
        raise ValueError("--password-stdin and --file - both want stdin: give one of them another way")
    with QueueClient(args.url, args.user, _password(args)) as client:
        return COMMANDS[args.command](client, args), 0


def main(argv=None, prog="queues-client"):
    """Run one command; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    if not args.user and args.command != "health":
        print("error: usage: give --user or set QUEUES_USER", file=sys.stderr)
        return OTHER_ERROR
    try:
        result, status = _run(args)
    except _NoPassword:
        print("error: no password: set QUEUES_PASSWORD or use --password-stdin", file=sys.stderr)
        return OTHER_ERROR
    except PartialPush as exc:
        status = _report(exc.cause)
        print(f"pushed {exc.pushed} message(s) before line {exc.line}; once the cause is fixed, the same"
              " command run again soon (within the server's idempotency_seconds) pushes the rest and"
              " not these twice", file=sys.stderr)  # fmt: skip
        return status
    except (QueueError, OSError, ValueError) as exc:
        return _report(exc)
    if result not in (None, []):
        print(json.dumps(result, indent=2))
    return status
