"""The OpenAPI document served at GET /openapi.yaml."""

import re
from pathlib import Path

import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from queues.queue_info import FIELDS

OPENAPI_FILE = Path(__file__).resolve().parents[1] / "queues" / "openapi.yaml"


def test_openapi_document_is_valid_openapi_3():
    document = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.0.")
    validate(document, cls=OpenAPIV30SpecValidator)  # raises OpenAPIValidationError when invalid


def test_openapi_document_describes_exactly_the_served_routes(app):
    document = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    served = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == served


def test_served_document_states_this_servers_limits(make_app):
    app = make_app(
        queues={"max_batch": 7, "max_wait_seconds": 2.5, "max_lease_seconds": 60, "max_messages": 99}
    )
    document = yaml.safe_load(app.test_client().get("/openapi.yaml").data)
    pull = {
        p["name"]: p["schema"]
        for p in document["paths"]["/queues/{name}/pull"]["post"]["parameters"]
        if "name" in p
    }
    assert (pull["max"]["maximum"], pull["wait"]["maximum"], pull["lease"]["maximum"]) == (7, 2.5, 60)
    schemas = document["components"]["schemas"]
    assert schemas["CreateQueue"]["properties"]["max_messages"]["maximum"] == 99
    assert schemas["PushBatch"]["properties"]["messages"]["maxItems"] == 7
    validate(document, cls=OpenAPIV30SpecValidator)


def test_queue_info_schema_requires_exactly_the_fields_both_backends_give_in_their_order():
    schema = yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))["components"]["schemas"]["QueueInfo"]
    assert schema["required"] == list(FIELDS)
    assert set(schema["properties"]) == set(FIELDS)


def test_every_authenticated_operation_documents_the_login_throttle():
    document = yaml.safe_load(OPENAPI_FILE.read_text())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            if "401" in responses:
                assert "429" in responses, f"{method.upper()} {path} does not document 429"
