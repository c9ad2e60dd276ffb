"""Quantum circuits between a job's program and its Ray workers as QPY, Qiskit's own circuit format, not pickle.

A circuit transpiled for a 127-qubit backend (3,000-6,000 instructions) takes 30-90 ms of CPU to pickle and ~25 ms to
unpickle here; as QPY 6-9 ms to write (with the check below) and ~2 ms to read. In a transpile fan-out every result
makes that trip once (worker -> program): pickled, it cost about as much CPU as the transpiling did (~80 ms).

:func:`register_if_loaded` registers, through Ray's ``ray.util.register_serializer``, a serializer for
``QuantumCircuit`` (that exact class: subclasses keep Ray's pickling) in the process calling it, once Qiskit is
loaded there (it never imports Qiskit itself). It is called where distributed tasks are submitted (the program's
arguments) and in the worker after a distributed task ran (its value). Reading needs no registration: the reader
calls :func:`_decoded`, found by name like any pickled function.

A circuit goes as QPY only when QPY gives back the same thing: every instruction a standard gate or one of
``measure``, ``reset``, ``barrier``, ``delay`` (QPY would turn a custom gate class into a plain ``Gate``), no
schedule (``op_start_times``: QPY does not keep it), and metadata QPY can write (JSON). Anything else is pickled
as Ray would have done (cloudpickle), inside the same envelope.
"""

from __future__ import annotations

import io
import sys
import threading
from collections import ChainMap
from typing import Any

_registered = False
_lock = threading.Lock()


def register_if_loaded() -> None:
    """Send this process's ``QuantumCircuit`` objects over Ray as QPY from now on, if Qiskit is loaded here and Ray
    is connected. Cheap to call on every submission."""
    global _registered
    if _registered or "qiskit.circuit" not in sys.modules:
        return
    with _lock:
        if _registered:
            return
        import ray
        from qiskit.circuit import QuantumCircuit

        if not ray.is_initialized():
            return
        ray.util.register_serializer(QuantumCircuit, serializer=_encoded, deserializer=_decoded)
        _registered = True


def _encoded(circuit: Any) -> tuple[str, bytes]:
    if _qpy_keeps(circuit):
        from qiskit import qpy

        buffer = io.BytesIO()
        try:
            qpy.dump(circuit, buffer)
        except Exception:  # e.g. metadata QPY cannot write as JSON: pickled like any other object  # noqa: BLE001
            pass
        else:
            return "qpy", buffer.getvalue()
    return "pickle", _pickled(circuit)


def _decoded(encoded: tuple[str, bytes]) -> Any:
    kind, data = encoded
    if kind == "qpy":
        from qiskit import qpy

        return qpy.load(io.BytesIO(data))[0]
    from ray import cloudpickle

    return cloudpickle.loads(data)


def _qpy_keeps(circuit: Any) -> bool:
    from qiskit.circuit import Barrier, Delay, Measure, Reset

    if getattr(circuit, "_op_start_times", None) is not None:
        return False
    for instruction in circuit.data:
        standard = getattr(instruction, "is_standard_gate", None)  # Qiskit >= 1.2
        if standard is None:
            return False
        # base_class: Qiskit's own class behind its singletons (a subclass of Measure is its own base class)
        if not (standard() or getattr(instruction.operation, "base_class", None) in (Measure, Reset, Barrier, Delay)):
            return False
    return True


def _pickled(circuit: Any) -> bytes:
    """``circuit`` pickled as Ray does, by a pickler without this module's entry for its class (the pickler reads
    its dispatch table when it is made, from its class)."""
    from ray import cloudpickle

    class Pickler(cloudpickle.CloudPickler):
        dispatch_table = ChainMap({kind: reduce for kind, reduce in cloudpickle.CloudPickler.dispatch_table.items()
                                   if kind is not type(circuit)})

    buffer = io.BytesIO()
    Pickler(buffer, protocol=5).dump(circuit)
    return buffer.getvalue()


def reset() -> None:
    """Pickle circuits again in this process (tests, and the benchmark's plain-Ray baseline)."""
    global _registered
    with _lock:
        if _registered:
            import ray
            from qiskit.circuit import QuantumCircuit

            ray.util.deregister_serializer(QuantumCircuit)
            _registered = False
