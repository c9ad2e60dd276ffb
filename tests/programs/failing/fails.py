from qiskit_serverless import get_arguments

print("starting a program that fails")


def compute(value):
    raise ValueError(f"cannot compute with {value}")


compute(get_arguments().get("value", 41))
