"""An image function's code, in Qiskit Serverless's custom-image layout (/runner/runner.py)."""

import os
import sys
import time

import image_only_lib  # installed in the image's own site directory only
from qiskit_serverless import Job, get_logger, get_provider_logger, update_status


class Runner:
    def run(self, arguments: dict) -> dict:
        print(f"runner: started with {sorted(arguments)}")
        get_logger().info("from the image's logger")
        get_provider_logger().info("for the provider only")
        if arguments.get("sleep"):
            print("runner: sleeping", flush=True)
            time.sleep(arguments["sleep"])
        update_status(Job.MAPPING)
        if arguments.get("fail"):
            raise ValueError(f"bad input {arguments['fail']}")
        with open("/data/input.txt") as handle:
            data_in = handle.read()
        with open("/data/from_image.txt", "w") as handle:
            handle.write(f"written in the container for {arguments['a']}\n")
        circuit = arguments["circuit"]
        return {
            "sum": arguments["a"] + arguments["b"],
            "python": sys.executable,
            "image_marker": open("/etc/qsflow-test-image").read().strip(),
            "image_lib": image_only_lib.NAME,
            "data_in": data_in,
            "data_path": os.environ.get("DATA_PATH"),
            "circuit": circuit,
            "num_qubits": circuit.num_qubits,
        }
