"""JSON encoding of arguments and results, as Qiskit Serverless does it.

Qiskit Serverless encodes with qiskit_ibm_runtime's RuntimeEncoder (QuantumCircuit, Parameter,
numpy arrays, SparsePauliOp, primitive results ...); qsflow uses the same classes, so arguments and
results round-trip between the two systems. Plain JSON values encode identically with the standard
encoder, so qiskit_ibm_runtime (seconds to import) is loaded only when a value needs it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

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
