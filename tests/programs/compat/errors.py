from qiskit_serverless import ServerlessError, get_arguments, save_result, send_error

mode = get_arguments().get("mode")
if mode == "send":
    send_error("E100", "a recoverable problem", "TimeoutError", args={"attempt": 2})
    save_result({"went_on": True})
elif mode == "serverless_error":
    raise ServerlessError("E42", "the backend is not reachable", {"backend": "fake_kyiv"})
elif mode == "value_error":
    raise ValueError("bad input 7")
