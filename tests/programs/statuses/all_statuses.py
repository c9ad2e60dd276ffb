# Walks through every detailed status Qiskit Serverless defines, pausing briefly in each.
import time

from qiskit_serverless import Job, save_result, update_status

accepted = []
for status in (Job.MAPPING, Job.OPTIMIZING_HARDWARE, Job.WAITING_QPU, Job.EXECUTING_QPU, Job.POST_PROCESSING):
    accepted.append(update_status(status))
    time.sleep(0.7)
save_result({"accepted": accepted})
