"""The OpenAPI document is the contract other teams generate clients from: a client generated from the
served /openapi.yaml by openapi-python-client drives every route of a live server, each request body
and reply a typed model."""

import importlib
import os
import subprocess
import sys

import pytest
import requests
import yaml

from queues import error_handlers, errors
from tests.conftest import REPO, basic

GENERATOR = REPO / ".venv" / "bin" / "openapi-python-client"
PACKAGE = "generated_queues_client"
# openapi-python-client reads no YAML responses; the document is text, which it gives as a str.
GENERATOR_CONFIG = "content_type_overrides:\n  application/yaml: text/plain\n"


@pytest.fixture(scope="module")
def api(live, tmp_path_factory):
    """The generated package, imported from a temporary folder; its modules by name through api()."""
    folder = tmp_path_factory.mktemp("generated")
    (folder / "openapi.yaml").write_bytes(requests.get(live.url("/openapi.yaml"), timeout=10).content)
    (folder / "config.yaml").write_text(GENERATOR_CONFIG)
    subprocess.run(
        [GENERATOR, "generate", "--path", "openapi.yaml", "--output-path", PACKAGE, "--meta", "none"]
        + ["--config", "config.yaml"],
        cwd=folder,
        env={**os.environ, "PATH": f"{GENERATOR.parent}:{os.environ['PATH']}"},
        check=True,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(folder))
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        del sys.modules[name]  # the other backend's generation, imported before
    try:
        yield lambda module: importlib.import_module(f"{PACKAGE}.{module}")
    finally:
        sys.path.remove(str(folder))


def test_the_test_below_covers_every_operation_of_the_document(live):
    document = yaml.safe_load(requests.get(live.url("/openapi.yaml"), timeout=10).content)
    operations = {
        op["operationId"]
        for path in document["paths"].values()
        for op in path.values()
        if "operationId" in op
    }
    assert operations == {name for _, name in _OPERATIONS}


def test_generated_client_drives_every_route_with_typed_models(live, api):
    models, client_module = api("models"), api("client")
    call = {name: api(f"api.{group}.{name}") for group, name in _OPERATIONS}
    with client_module.Client(base_url=live.base_url, headers=basic("admin")) as admin:
        name = f"gen-{live.backend}"

        health = call["get_health"].sync(client=admin)
        assert isinstance(health, models.Health) and health.status == models.HealthStatus.OK
        assert "openapi:" in call["get_openapi"].sync(client=admin)
        dead = call["create_queue"].sync(client=admin, body=models.CreateQueue(name=f"{name}.dead"))
        created = call["create_queue"].sync(
            client=admin,
            body=models.CreateQueue(
                name=name, max_messages=50, max_deliveries=1, dead_letter_queue=f"{name}.dead"
            ),
        )
        assert isinstance(dead, models.QueueInfo) and isinstance(created, models.QueueInfo)
        assert created.max_deliveries == 1 and created.oldest_enqueued_at is None
        listed = call["list_queues"].sync(client=admin)
        assert isinstance(listed, models.QueueList) and name in [q.name for q in listed.queues]

        one = models.PushOne(message=models.Message.from_dict({"n": 1}))
        pushed = call["push_messages"].sync(name, client=admin, body=one, idempotency_key="gen-1")
        again = call["push_messages"].sync_detailed(name, client=admin, body=one, idempotency_key="gen-1")
        assert isinstance(pushed, models.PushResult) and again.parsed.id == pushed.id
        assert again.headers["Idempotent-Replayed"] == "true"
        batch = models.PushBatch(messages=[models.Message.from_dict({"n": n}) for n in (2, 3, 4)])
        assert isinstance(call["push_messages"].sync(name, client=admin, body=batch), models.PushBatchResult)

        browsed = call["browse_messages"].sync(name, client=admin, limit=2, offset=1)
        assert isinstance(browsed, models.BrowseResult) and browsed.total == 4
        assert [m.message.to_dict() for m in browsed.messages] == [{"n": 2}, {"n": 3}]
        assert isinstance(call["get_queue"].sync(name, client=admin), models.QueueInfo)

        leased = call["pull_messages"].sync(name, client=admin, lease=30)
        assert isinstance(leased, models.PulledMessage) and leased.deliveries == 1
        extended = call["extend_lease"].sync(
            name, client=admin, body=models.ExtendRequest(receipt=leased.receipt, lease=60)
        )
        assert isinstance(extended, models.ExtendResult)
        nacked = call["nack_message"].sync(
            name, client=admin, body=models.NackRequest(receipt=leased.receipt, reason="no feed")
        )
        assert isinstance(nacked, models.NackResult) and nacked.dead_lettered

        batch_pull = call["pull_messages"].sync(name, client=admin, max_=2, lease=30)
        assert isinstance(batch_pull, models.PulledBatch)
        acked = call["ack_messages"].sync(
            name, client=admin, body=models.AckRequestType1(receipts=[m.receipt for m in batch_pull.messages])
        )
        assert isinstance(acked, models.AckResult) and acked.acked == 2
        leased = call["browse_messages"].sync(name, client=admin, state=models.BrowseMessagesState.LEASED)
        assert isinstance(leased, models.BrowseResult) and leased.total == 0

        dead_letters = call["browse_messages"].sync(f"{name}.dead", client=admin)
        assert isinstance(dead_letters.messages[0].dead_letter, models.DeadLetter)
        assert dead_letters.messages[0].dead_letter.reason == "no feed"
        redriven = call["redrive_messages"].sync(f"{name}.dead", client=admin, body=models.RedriveRequest())
        assert isinstance(redriven, models.RedriveResult) and redriven.by_queue.to_dict() == {name: 1}

        assert "<!doctype html>" in call["show_queues"].sync(client=admin).lower()
        assert name in call["show_queue"].sync(name, client=admin)
        assert "textContent" in call["get_static"].sync("common.js", client=admin)

        purged = call["purge_queue"].sync(name, client=admin)
        assert isinstance(purged, models.PurgeResult) and purged.purged_messages == 2
        assert "queues_waiting_pulls" in call["get_metrics"].sync(client=admin)
        deleted = call["delete_queue"].sync(name, client=admin)
        assert isinstance(deleted, models.DeleteResult)
        missing = call["get_queue"].sync(name, client=admin)
        assert (
            isinstance(missing, models.Error) and missing.error.code == models.ErrorErrorCode.QUEUE_NOT_FOUND
        )


_OPERATIONS = [
    ("service", "get_health"),
    ("service", "get_openapi"),
    ("metrics", "get_metrics"),
    ("queues", "list_queues"),
    ("queues", "create_queue"),
    ("queues", "get_queue"),
    ("queues", "delete_queue"),
    ("messages", "push_messages"),
    ("messages", "pull_messages"),
    ("messages", "ack_messages"),
    ("messages", "nack_message"),
    ("messages", "extend_lease"),
    ("operators", "browse_messages"),
    ("operators", "purge_queue"),
    ("operators", "redrive_messages"),
    ("console", "show_queues"),
    ("console", "show_queue"),
    ("console", "get_static"),
]


def test_the_error_schema_names_every_code_the_service_answers(live):
    document = yaml.safe_load(requests.get(live.url("/openapi.yaml"), timeout=10).content)
    listed = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    classes = [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.QueueServiceError)
    ]
    answered = {cls.code for cls in classes} | set(error_handlers._CODES_BY_STATUS.values())
    assert set(listed) == answered
