# Enters RUNNING: WAITING_FOR_QPU and stays there until the job is stopped (at most 10 minutes).
import time

from qiskit_serverless import Job, update_status

update_status(Job.WAITING_QPU)
print("waiting for the QPU", flush=True)
time.sleep(600)
