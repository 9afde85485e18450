"""The command line on QueueClient: `python -m client COMMAND ...` for admin scripts and people.

Credentials come from --user and the QUEUES_PASSWORD environment variable (or a prompt), never from
an argument; the URL from --url or QUEUES_URL. Output is JSON on stdout; an error is one line on
stderr, `error: CODE: MESSAGE`, with the exit status of EXIT_CODES.
"""

import argparse
import getpass
import json
import os
import sys

from client.api import QueueClient
from client.errors import QueueError

EXIT_CODES = {
    "queue_not_found": 2,
    "unauthorized": 3,
    "forbidden": 3,
    "queue_full": 4,
    "queue_exists": 4,
    "queue_in_use": 4,
    "receipt_invalid": 4,
    "storage_unavailable": 5,
    "unreachable": 5,
}
OTHER_ERROR = 1
BATCH = 100


def _parser():
    parser = argparse.ArgumentParser(prog="python -m client", description="The queue service's command line.")
    parser.add_argument("--url", default=os.environ.get("QUEUES_URL", "http://127.0.0.1:7500"))
    parser.add_argument("--user", default=os.environ.get("QUEUES_USER"), help="or QUEUES_USER")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the queues")
    create = commands.add_parser("create", help="create a queue")
    create.add_argument("name")
    create.add_argument("--max", type=int, dest="max_messages")
    create.add_argument("--schema", choices=["job", "result"])
    create.add_argument("--max-deliveries", type=int)
    create.add_argument("--dead-letter-queue")
    for name, text in (("delete", "delete a queue and its messages"), ("info", "show a queue")):
        commands.add_parser(name, help=text).add_argument("name")
    push = commands.add_parser("push", help="push one message, or many from a JSON Lines file")
    push.add_argument("name")
    source = push.add_mutually_exclusive_group(required=True)
    source.add_argument("message", nargs="?", help="one message, as a JSON object")
    source.add_argument("--file", help="a JSON Lines file of messages ('-' for stdin)")
    pull = commands.add_parser("pull", help="pull (prints nothing when no message came)")
    pull.add_argument("name")
    pull.add_argument("--max", type=int)
    pull.add_argument("--wait", type=float)
    pull.add_argument("--lease", type=int)
    ack = commands.add_parser("ack", help="acknowledge leased messages")
    ack.add_argument("name")
    ack.add_argument("receipts", nargs="+")
    return parser


def _push_file(client, name, path):
    """Push a JSON Lines file in batches; a progress line on stderr when it is a terminal."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    ids, batch = [], []
    with stream:
        for line in stream:
            if line.strip():
                batch.append(json.loads(line))
            if len(batch) == BATCH:
                ids += client.push_batch(name, batch)
                batch = []
                if sys.stderr.isatty():
                    print(f"\rpushed {len(ids):,}", end="", file=sys.stderr, flush=True)
        if batch:
            ids += client.push_batch(name, batch)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return {
        "queue": name,
        "pushed": len(ids),
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
    }


def _run(client, args):
    if args.command == "list":
        return client.list_queues()
    if args.command == "create":
        return client.create_queue(
            args.name, args.max_messages, args.schema, args.max_deliveries, args.dead_letter_queue
        )
    if args.command == "delete":
        return {"name": args.name, "deleted_messages": client.delete_queue(args.name)}
    if args.command == "info":
        return client.get_queue(args.name)
    if args.command == "push":
        if args.file:
            return _push_file(client, args.name, args.file)
        return {"id": client.push(args.name, json.loads(args.message))}
    if args.command == "pull":
        return client.pull(args.name, max=args.max, wait=args.wait, lease=args.lease)
    return {"acked": client.ack(args.name, args.receipts)}


def main(argv=None):
    """Run one command; returns the exit status."""
    args = _parser().parse_args(argv)
    if not args.user:
        print("error: usage: give --user or set QUEUES_USER", file=sys.stderr)
        return OTHER_ERROR
    password = os.environ.get("QUEUES_PASSWORD") or getpass.getpass(f"Password for {args.user}: ")
    try:
        with QueueClient(args.url, args.user, password) as client:
            result = _run(client, args)
    except QueueError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_CODES.get(exc.code, OTHER_ERROR)
    except (OSError, ValueError) as exc:
        print(f"error: input: {exc}", file=sys.stderr)
        return OTHER_ERROR
    if result not in (None, []):
        print(json.dumps(result, indent=2))
    return 0
