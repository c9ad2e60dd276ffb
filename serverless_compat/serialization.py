"""JSON encoding of arguments and results, as Qiskit Serverless does it.

Qiskit Serverless encodes with qiskit_ibm_runtime's RuntimeEncoder (QuantumCircuit, Parameter,
numpy arrays, SparsePauliOp, primitive results ...); qsflow uses the same classes, so arguments and
results round-trip between the two systems.
"""

from __future__ import annotations

import json
from typing import Any

from qiskit_ibm_runtime.utils.json import RuntimeDecoder, RuntimeEncoder


class QiskitObjectsEncoder(RuntimeEncoder):
    """JSON encoder for Qiskit objects (Qiskit Serverless's name for it)."""


class QiskitObjectsDecoder(RuntimeDecoder):
    """JSON decoder for Qiskit objects (Qiskit Serverless's name for it)."""


def dumps(value: Any) -> str:
    """Encode ``value``; raise TypeError naming the value's type when it cannot be encoded."""
    try:
        return json.dumps(value, cls=QiskitObjectsEncoder)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Cannot encode {type(value).__name__} as JSON ({exc}). Pass JSON values, numpy arrays "
            "or Qiskit objects (QuantumCircuit, SparsePauliOp, ...), or convert the value first."
        ) from None


def loads(text: str | bytes) -> Any:
    return json.loads(text, cls=QiskitObjectsDecoder)


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (dicts, lists, strings ...), Qiskit objects encoded in place."""
    return json.loads(dumps(value))


def from_jsonable(value: Any) -> Any:
    return loads(json.dumps(value))
