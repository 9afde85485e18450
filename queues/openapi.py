"""The OpenAPI document served at GET /openapi.yaml, with this server's configured limits in it."""

from pathlib import Path

import yaml

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.yaml"


def _parameter(document, path, method, name):
    parameters = document["paths"][path][method]["parameters"]
    return next(p for p in parameters if p.get("name") == name)["schema"]


def _pull_parameter(document, name):
    return _parameter(document, "/queues/{name}/pull", "post", name)


def render_openapi(limits):
    """openapi.yaml as YAML bytes, its maxima set from limits (the [queues] configuration)."""
    document = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    schemas["CreateQueue"]["properties"]["max_messages"]["maximum"] = limits.max_messages
    schemas["PushBatch"]["properties"]["messages"]["maxItems"] = limits.max_batch
    schemas["AckRequest"]["oneOf"][1]["properties"]["receipts"]["maxItems"] = limits.max_batch
    schemas["ExtendRequest"]["properties"]["lease"]["maximum"] = limits.max_lease_seconds
    _pull_parameter(document, "max")["maximum"] = limits.max_batch
    _pull_parameter(document, "wait")["maximum"] = limits.max_wait_seconds
    _pull_parameter(document, "lease")["maximum"] = limits.max_lease_seconds
    schemas["NackRequest"]["properties"]["delay"]["maximum"] = limits.max_lease_seconds
    _parameter(document, "/queues/{name}/messages", "get", "limit")["maximum"] = limits.max_batch
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100).encode()
