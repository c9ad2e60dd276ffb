"""Arguments and results use Qiskit Serverless's JSON encoding (qiskit_ibm_runtime's Runtime codec)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit_ibm_runtime import RuntimeDecoder, RuntimeEncoder

from serverless_compat import serialization

from conftest import bell


def _primitive_result():
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_ibm_runtime import SamplerV2
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = FakeManilaV2()
    isa = generate_preset_pass_manager(optimization_level=1, backend=backend, seed_transpiler=3).run(bell())
    return SamplerV2(mode=backend).run([isa], shots=64).result()


def test_qiskit_objects_round_trip():
    theta = Parameter("θ")
    parametrized = QuantumCircuit(1)
    parametrized.rx(theta * 2 + 1, 0)
    value = {
        "circuit": bell(),
        "parametrized": parametrized,
        "parameter": theta,
        "observable": SparsePauliOp.from_list([("ZZ", 1.0), ("XI", -0.5j)]),
        "array": np.arange(6).reshape(2, 3),
        "complex": 1 + 2j,
        "plain": {"a": [1, 2.5, None, True, "x"]},
    }
    back = serialization.loads(serialization.dumps(value))
    assert back["circuit"] == value["circuit"]
    assert back["parametrized"] == value["parametrized"]
    assert back["parameter"] == theta
    # Parameter expressions travel inside circuits (QPY); like Qiskit Serverless's encoder, the
    # Runtime encoder has no form for a bare ParameterExpression.
    assert str(back["parametrized"].data[0].operation.params[0]) == str(theta * 2 + 1)
    assert back["observable"] == value["observable"]
    assert np.array_equal(back["array"], value["array"])
    assert back["complex"] == value["complex"]
    assert back["plain"] == value["plain"]


def test_primitive_results_round_trip():
    result = _primitive_result()
    back = serialization.loads(serialization.dumps({"result": result}))["result"]
    assert back[0].data.meas.get_counts() == result[0].data.meas.get_counts()


def test_same_encoding_as_qiskit_runtime():
    """What qsflow writes, qiskit_ibm_runtime's decoder reads, and the other way round."""
    value = {"circuit": bell(), "observable": SparsePauliOp("XZ")}
    ours = serialization.dumps(value)
    assert json.loads(ours, cls=RuntimeDecoder)["circuit"] == value["circuit"]
    theirs = json.dumps(value, cls=RuntimeEncoder)
    assert serialization.loads(theirs)["observable"] == value["observable"]
    # Plain JSON values are encoded exactly as the Runtime encoder does.
    plain = {"x": [1, 2.5, "s", None, {"y": False}]}
    assert serialization.dumps(plain) == json.dumps(plain, cls=RuntimeEncoder)


def test_unencodable_values_name_the_type():
    with pytest.raises(TypeError, match="Cannot encode object"):
        serialization.dumps(object())
