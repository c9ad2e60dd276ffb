# Runs two child jobs with distribute_qiskit_function and collects their results with get().
from qiskit_serverless import distribute_qiskit_function, get, save_result


@distribute_qiskit_function()
def square(x):
    return {"square": x * x}


refs = [square(x=3), square(x=4)]
save_result({"children": get(refs)})
