"""A program importing the REAL qiskit-serverless package (from PyPI) runs through qsflow.

The function pins ``qiskit-serverless`` in its dependencies; its isolated environment then imports
that package, not qsflow's shim, and the runner's file contract (ARGUMENTS_PATH, RESULTS_PATH,
ENV_JOB_ID_GATEWAY) carries the arguments in and the result out.
"""

from __future__ import annotations

from qiskit import QuantumCircuit

from serverless_compat import QiskitFunction

from conftest import PROGRAMS


def test_real_qiskit_serverless_program(client, qsflow_home):
    fn = client.upload(QiskitFunction(title="real-client", entrypoint="real_client.py",
                                      working_dir=str(PROGRAMS / "real_package"),
                                      dependencies=["qiskit-serverless==0.37.0"]))
    circuit = QuantumCircuit(3)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.cx(1, 2)
    job = fn.run(circuit=circuit)
    assert job.wait(timeout=600) == "DONE", job.logs()
    result = job.result()
    assert result["module"].startswith(str(qsflow_home / "envs"))
    assert result["version"] == "0.37.0"
    assert result["n_qubits"] == 3
    assert result["circuit"] == circuit
    assert result["in_serverless"] is True
