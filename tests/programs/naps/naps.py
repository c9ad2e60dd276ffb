# Sleeps the seconds it is given, then saves them as its result.
import time

from qiskit_serverless import get_arguments, save_result

seconds = get_arguments().get("seconds", 2)
time.sleep(seconds)
save_result({"slept": seconds})
