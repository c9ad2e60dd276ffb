# Detailed statuses: the program reports each stage of its work with update_status(Job.<stage>).
from qiskit_serverless import Job, save_result, update_status

stages = [Job.MAPPING, Job.OPTIMIZING_HARDWARE, Job.WAITING_QPU, Job.EXECUTING_QPU, Job.POST_PROCESSING]
accepted = []
for stage in stages:
    accepted.append(update_status(stage))
    print(f"stage {stage}")
save_result({"stages": stages, "accepted": accepted})
