"""JSON encoding of arguments and results, as Qiskit Serverless does it.

Qiskit Serverless encodes with qiskit_ibm_runtime's RuntimeEncoder (QuantumCircuit, Parameter,
numpy arrays, SparsePauliOp, primitive results ...); qsflow uses the same classes, so arguments and
results round-trip between the two systems. Plain JSON values encode identically with the standard
encoder, so qiskit_ibm_runtime (seconds to import) is loaded only when a value needs it.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Optional

_QISKIT_MARKER = '"__type__"'


@functools.cache
def _codecs() -> tuple[type[json.JSONEncoder], type[json.JSONDecoder]]:
    from qiskit_ibm_runtime import RuntimeDecoder, RuntimeEncoder

    class QiskitObjectsEncoder(RuntimeEncoder):
        """JSON encoder for Qiskit objects (Qiskit Serverless's name for it)."""

    class QiskitObjectsDecoder(RuntimeDecoder):
        """JSON decoder for Qiskit objects (Qiskit Serverless's name for it)."""

    return QiskitObjectsEncoder, QiskitObjectsDecoder


def __getattr__(name: str) -> Any:
    if name == "QiskitObjectsEncoder":
        return _codecs()[0]
    if name == "QiskitObjectsDecoder":
        return _codecs()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dumps(value: Any) -> str:
    """Encode ``value``; raise TypeError naming the value's type when it cannot be encoded."""
    try:
        return json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        pass
    try:
        return json.dumps(value, cls=_codecs()[0])
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Cannot encode {type(value).__name__} as JSON ({exc}). Pass JSON values, numpy arrays "
            "or Qiskit objects (QuantumCircuit, SparsePauliOp, ...), or convert the value first."
        ) from None


def loads(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        text = text.decode()
    if _QISKIT_MARKER not in text:
        return json.loads(text)
    return json.loads(text, cls=_codecs()[1])


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (dicts, lists, strings ...), Qiskit objects encoded in place."""
    return json.loads(dumps(value))


_QPY_TYPES = ("QuantumCircuit", "Instruction")  # the encoded forms whose payload is QPY


def qpy_version_in(text: str) -> Optional[int]:
    """The newest QPY format version among the circuits encoded in ``text``; None if it has none."""
    import base64
    import io
    import zlib

    from qiskit.qpy import get_qpy_version

    versions = [get_qpy_version(io.BytesIO(zlib.decompress(base64.standard_b64decode(node["__value__"]))))
                for node in _qpy_nodes(json.loads(text))]
    return max(versions, default=None)


def with_qpy_version(text: str, version: int) -> str:
    """``text`` (encoded JSON) with every circuit re-encoded as QPY format ``version``.

    For a program whose Qiskit is older than qsflow's: it reads QPY up to its own version only.
    Raises ValueError naming the fix when qsflow's Qiskit cannot write a format that old.
    """
    import base64
    import io
    import zlib

    from qiskit import qpy

    value = json.loads(text)
    nodes = list(_qpy_nodes(value))
    if not nodes:
        return text
    if version < qpy.QPY_COMPATIBILITY_VERSION:
        raise ValueError(
            f"The program's Qiskit reads circuits up to QPY format {version}; qsflow's Qiskit writes "
            f"format {qpy.QPY_COMPATIBILITY_VERSION} or newer. Add a newer Qiskit to the function's "
            f"dependencies (e.g. \"qiskit>=1.3\") and upload it again."
        )
    encoder = _codecs()[0]
    for node in nodes:
        with io.BytesIO(zlib.decompress(base64.standard_b64decode(node["__value__"]))) as source:
            circuits = qpy.load(source)
        with io.BytesIO() as target:
            qpy.dump(circuits, target, metadata_serializer=encoder, version=version)
            node["__value__"] = base64.standard_b64encode(zlib.compress(target.getvalue())).decode()
    return json.dumps(value, allow_nan=True)


def _qpy_nodes(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("__type__") in _QPY_TYPES and isinstance(value.get("__value__"), str):
            yield value
            return
        for item in value.values():
            yield from _qpy_nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _qpy_nodes(item)
