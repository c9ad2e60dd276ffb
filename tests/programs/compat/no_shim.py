# Never imports qiskit_serverless: the runner still records its error from the traceback.
raise KeyError("missing")
