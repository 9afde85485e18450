"""Message schemas: the JSON Schema files in schemas/, compiled once and used to check pushes."""

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.exceptions import SchemaError

from queues.errors import InvalidMessage

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SCHEMA_NAMES = ("job", "result")
MAX_DETAILS = 100


class SchemaFileError(Exception):
    """A schema file that is missing, not YAML, or not a valid JSON Schema."""


def _ordered(validator, fields, instance, schema):
    """x-ordered: the named fields, where present and valid themselves, must not decrease."""
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    values = [
        (f, instance[f])
        for f in fields
        if f in instance and validator.evolve(schema=properties.get(f, {})).is_valid(instance[f])
    ]
    for (first, low), (second, high) in zip(values, values[1:], strict=False):
        if type(low) is type(high) and isinstance(low, str | int | float) and low > high:
            yield ValidationError(f"{first} ({low!r}) must not be after {second} ({high!r})")


_Validator = validators.extend(Draft202012Validator, {"x-ordered": _ordered})


def load_schemas(directory=SCHEMA_DIR):
    """Compile every schema of SCHEMA_NAMES from directory/NAME.yaml; raises SchemaFileError."""
    compiled = {}
    for name in SCHEMA_NAMES:
        path = Path(directory) / f"{name}.yaml"
        try:
            schema = yaml.safe_load(path.read_text(encoding="utf-8"))
            _Validator.check_schema(schema)
        except (OSError, yaml.YAMLError, SchemaError) as exc:
            raise SchemaFileError(f"{path}: not a usable JSON Schema: {exc}") from exc
        compiled[name] = _Validator(schema, format_checker=FormatChecker())
    return compiled


def _problems(index, instance, validator):
    if not isinstance(instance, dict):
        yield {"index": index, "path": "", "problem": "a message must be a JSON object"}
        return
    if validator is None:
        return
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        path = [str(part) for part in error.absolute_path]
        if error.validator == "required":
            # Name the missing field itself, not the object that lacks it.
            path.append(error.message.split("'")[1])
        yield {"index": index, "path": "/".join(path), "problem": error.message}


def check_messages(messages, validator):
    """Raise InvalidMessage naming each bad message's index and field; validator may be None."""
    if validator is None and all(type(m) is dict for m in messages):
        return  # the common case of a queue without a schema, without a generator per message
    details = []
    for index, instance in enumerate(messages):
        details.extend(_problems(index, instance, validator))
        if len(details) >= MAX_DETAILS:
            break
    if details:
        count = len({d["index"] for d in details})
        raise InvalidMessage(f"{count} message(s) are not valid; nothing was added", details[:MAX_DETAILS])
