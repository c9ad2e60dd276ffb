# Distributed tasks with and without a custom resource only one Ray node has: where does each run?
import ray

from qiskit_serverless import distribute_task, get, get_arguments, save_result

resource = get_arguments()["resource"]


@distribute_task(target={"cpu": 0.5, "resources": {resource: 1}})
def pinned(i):
    return ray.get_runtime_context().get_node_id()


@distribute_task(target={"cpu": 0.5})
def anywhere(i):
    return ray.get_runtime_context().get_node_id()


pinned_nodes = get([pinned(i) for i in range(4)])
free_nodes = get([anywhere(i) for i in range(4)])
nodes = {node["NodeID"]: node["Resources"] for node in ray.nodes() if node["Alive"]}
save_result({"pinned": pinned_nodes, "anywhere": free_nodes,
             "with_resource": sorted(n for n, r in nodes.items() if resource in r),
             "nodes": sorted(nodes)})
