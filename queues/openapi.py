"""The OpenAPI document served at GET /openapi.yaml, with this server's configured limits in it."""

from functools import lru_cache
from pathlib import Path

import yaml

OPENAPI_FILE = Path(__file__).resolve().parent / "openapi.yaml"
# libyaml's parser and emitter where PyYAML has them: the pure-Python ones took 0.4 s of every start.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _parameter(document, path, method, name):
    parameters = document["paths"][path][method]["parameters"]
    return next(p for p in parameters if p.get("name") == name)["schema"]


def _pull_parameter(document, name):
    return _parameter(document, "/queues/{name}/pull", "post", name)


@lru_cache(maxsize=16)
def render_openapi(limits):
    """openapi.yaml as YAML bytes, its maxima set from limits (the [queues] configuration, frozen);
    made once per process and limits: PyYAML builds and represents the document in Python."""
    document = yaml.load(OPENAPI_FILE.read_text(encoding="utf-8"), Loader=_LOADER)
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
    return yaml.dump(document, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=100).encode()
