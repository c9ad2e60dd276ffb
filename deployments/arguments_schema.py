"""A function's ``arguments_schema``: a JSON Schema its job arguments must match.

The schema is checked at upload (it must be a usable JSON Schema) and applied to the arguments
*as they are encoded for the job* (``serverless_compat.serialization``: Qiskit objects become
``{"__type__": ..., "__value__": ...}`` objects, as Qiskit Serverless's client encodes them).
``{}`` and ``None`` mean no schema; ``True``/``False`` accept/reject every argument.
References never leave the document: the registry has no retrieval, so an external ``$ref`` is
refused instead of fetched.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Union

import jsonschema
from referencing import Registry

Schema = Union[dict, bool]

# The formats asserted (the others stay annotations), as Qiskit Serverless's gateway does: checks
# whose cost is linear in their input.
_FORMAT_CHECKER = jsonschema.FormatChecker(formats=("date", "email", "idn-email", "ipv4", "ipv6", "uuid"))
_EXCERPT = 150


def normalized(schema: Any) -> Optional[Schema]:
    """The schema to store: ``None`` for no schema (``None`` or ``{}``), else the schema itself."""
    if schema is None or (isinstance(schema, dict) and not schema):
        return None
    return schema


def _validator(schema: Schema) -> Any:
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=Registry(), format_checker=_FORMAT_CHECKER)


def check(schema: Any) -> Optional[Schema]:
    """Raise ValueError naming the problem when ``schema`` cannot be used; return it normalized."""
    schema = normalized(schema)
    if schema is None:
        return None
    if not isinstance(schema, (dict, bool)):
        raise ValueError(
            f"arguments_schema must be a JSON Schema: an object (dict) or a boolean, not "
            f"{type(schema).__name__}. E.g. arguments_schema={{'type': 'object', "
            "'properties': {'shots': {'type': 'integer'}}}."
        )
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"arguments_schema must be plain JSON (dicts, lists, strings, numbers): {exc}") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"arguments_schema is not a valid JSON Schema: {exc.message}") from None
    try:  # a trial run: unresolvable or external references fail here, not in every later job
        _validator(schema).validate({})
    except jsonschema.ValidationError:
        pass
    except Exception as exc:
        raise ValueError(
            f"arguments_schema cannot be used ({type(exc).__name__}: {exc}). Keep references inside "
            "the schema, e.g. {'$ref': '#/$defs/name'}."
        ) from None
    return schema


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _EXCERPT else f"{text[:_EXCERPT]}... (value truncated)"


def _where(error: jsonschema.ValidationError) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "(arguments)"


def _text(error: jsonschema.ValidationError) -> str:
    if error.validator is None:  # the schema `false`
        return f"the schema rejects every value: rejected value {_excerpt(error.instance)}"
    if len(error.message) <= 2 * _EXCERPT:
        return error.message
    # jsonschema's message starts with the whole rejected value: keep the reason instead.
    return (f"'{error.validator}' validation failed, schema requires {_excerpt(error.validator_value)}: "
            f"rejected value {_excerpt(error.instance)}")


def violations(schema: Any, encoded_arguments: Any) -> list[tuple[list, str]]:
    """Every way ``encoded_arguments`` breaks ``schema``: ``(path, "where: what")`` each, by path."""
    schema = normalized(schema)
    if schema is None:
        return []
    try:
        errors = list(_validator(schema).iter_errors(encoded_arguments))
    except Exception as exc:  # a stored schema that cannot be evaluated: say so, run nothing
        return [([], f"the function arguments schema cannot be used: {type(exc).__name__}: {exc}")]
    errors.sort(key=lambda e: ([str(p) for p in e.absolute_path], e.message))
    return [(list(e.absolute_path), f"{_where(e)}: {_text(e)}") for e in errors]


def refusal(schema: Any, encoded_arguments: Any) -> Optional[dict[str, Any]]:
    """None when the arguments match, else ``{"message": ..., "path": [...]}`` listing every violation.

    The shape is Qiskit Serverless's 400 body for invalid arguments; ``path`` is the first
    violation's.
    """
    found = violations(schema, encoded_arguments)
    if not found:
        return None
    count = f"{len(found)} problem{'s' if len(found) > 1 else ''}"
    listed = "; ".join(text for _, text in found)
    return {"message": f"The arguments do not match the function's arguments_schema ({count}): {listed}",
            "path": found[0][0]}
