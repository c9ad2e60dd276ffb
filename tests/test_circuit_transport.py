"""Circuits travel over Ray as QPY when QPY gives them back unchanged, pickled otherwise (tasks.circuit_transport),
on a real local Ray head: in the program's process and in a worker that ran a task."""

from __future__ import annotations

import pytest
from qiskit.circuit import Gate, Parameter, QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from conftest import local_ray_head
from tasks import circuit_transport

QPY_MAGIC = b"QISKIT"


@pytest.fixture(scope="module")
def ray():
    with local_ray_head(__name__):
        import ray

        circuit_transport.register_if_loaded()
        try:
            yield ray
        finally:
            circuit_transport.reset()


def _abstract(qubits: int = 3) -> QuantumCircuit:
    circuit = QuantumCircuit(qubits, qubits, name="ghz")
    circuit.h(0)
    for q in range(1, qubits):
        circuit.cx(0, q)
    circuit.barrier()
    circuit.measure(range(qubits), range(qubits))
    return circuit


def _isa(circuit: QuantumCircuit, **options) -> QuantumCircuit:
    return generate_preset_pass_manager(optimization_level=2, backend=FakeManilaV2(), seed_transpiler=3,
                                        **options).run(circuit)


class Sandwich(Gate):
    """A custom gate class: QPY would give back a plain Gate."""

    def __init__(self) -> None:
        super().__init__("sandwich", 1, [])

    def _define(self) -> None:
        definition = QuantumCircuit(1)
        definition.h(0)
        definition.x(0)
        definition.h(0)
        self.definition = definition


def test_an_isa_circuit_goes_as_qpy_and_comes_back_equal_with_its_layout(ray):
    isa = _isa(_abstract())
    assert QPY_MAGIC in ray.cloudpickle.dumps(isa)
    back = ray.get(ray.put(isa))
    assert back == isa and type(back) is QuantumCircuit and back.name == "ghz"
    assert back.layout.initial_layout == isa.layout.initial_layout
    assert back.layout.final_index_layout() == isa.layout.final_index_layout()


def test_a_worker_that_ran_a_task_returns_circuits_as_qpy(ray):
    @ray.remote(num_cpus=0.5)
    def transpile(circuits):
        from tasks import circuit_transport as transport

        isa = [_isa(c) for c in circuits]
        transport.register_if_loaded()  # what a distributed task's worker does after the task ran
        return {"isa": isa, "as_qpy": QPY_MAGIC in ray.cloudpickle.dumps(isa[0])}

    circuits = [_abstract(2), _abstract(3)]
    returned = ray.get(transpile.remote(circuits))
    assert returned["as_qpy"]
    assert returned["isa"] == [_isa(c) for c in circuits]


def test_parameters_keep_their_identity(ray):
    theta = Parameter("theta")
    circuit = QuantumCircuit(1)
    circuit.rx(theta, 0)
    circuit.measure_all()
    assert QPY_MAGIC in ray.cloudpickle.dumps(circuit)
    back = ray.get(ray.put(circuit))
    assert back.parameters[0] == theta
    assert back.assign_parameters({theta: 0.25}) == circuit.assign_parameters({theta: 0.25})


def _custom_gate() -> QuantumCircuit:
    circuit = QuantumCircuit(1)
    circuit.append(Sandwich(), [0])
    return circuit


def _scheduled() -> QuantumCircuit:
    scheduled = _isa(_abstract(), scheduling_method="alap")
    assert scheduled.op_start_times
    return scheduled


def _odd_metadata() -> QuantumCircuit:
    circuit = _abstract()
    circuit.metadata = {"shots": {1024, 2048}}  # a set: not JSON, so not QPY
    return circuit


@pytest.mark.parametrize("make, kept", [
    (_custom_gate, lambda back: type(back.data[0].operation) is Sandwich),
    (_scheduled, lambda back: back.op_start_times == _scheduled().op_start_times),
    (_odd_metadata, lambda back: back.metadata == {"shots": {1024, 2048}}),
], ids=["custom gate class", "scheduled", "metadata not JSON"])
def test_what_qpy_would_change_is_pickled_as_before(ray, make, kept):
    circuit = make()
    assert QPY_MAGIC not in ray.cloudpickle.dumps(circuit)
    back = ray.get(ray.put(circuit))
    assert back == circuit and kept(back)


def test_circuits_inside_other_values(ray):
    isa = _isa(_abstract())
    value = {"circuits": [isa, _custom_gate()], "pair": (isa, 7)}
    back = ray.get(ray.put(value))
    assert back == value
    assert type(back["circuits"][1].data[0].operation) is Sandwich
