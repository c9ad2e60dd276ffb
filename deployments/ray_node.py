"""One more Ray node joining a head on this machine, on 127.0.0.1: ``python -m deployments.ray_node``.

``ray start --address`` refuses to join when Ray is told to keep to the loopback address
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which the local head uses), and without that setting Ray replaces
127.0.0.1 with the machine's outward address. So this starts the node the way ``ray start`` and Ray's own
``ray.cluster_utils.Cluster`` do, with ``ray._private.node.Node``, and stays in the foreground until SIGTERM or
SIGINT; the node's processes stop with it (Ray's reaper kills them if this process is killed).

    python -m deployments.ray_node --address 127.0.0.1:PORT --temp-dir DIR --num-cpus 1 --resources '{"x": 2}'
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.ray_node")
    parser.add_argument("--address", required=True, help="the head's GCS address, 127.0.0.1:PORT")
    parser.add_argument("--temp-dir", required=True, help="this node's Ray temp dir (keep the path short)")
    parser.add_argument("--num-cpus", type=int, default=1)
    parser.add_argument("--resources", default="{}", help="custom resources, JSON")
    parser.add_argument("--object-store-bytes", type=int, default=256 * 1024 * 1024)
    args = parser.parse_args(argv)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before importing Ray: keep every address on loopback

    from ray._private.node import Node
    from ray._private.parameter import RayParams

    params = RayParams(
        gcs_address=args.address, node_ip_address="127.0.0.1", num_cpus=args.num_cpus,
        resources=json.loads(args.resources), temp_dir=args.temp_dir, object_store_memory=args.object_store_bytes,
        include_log_monitor=False, node_manager_port=0, min_worker_port=0, max_worker_port=0,
    )
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=True)
    print(f"Ray node started: {node.unique_id}", flush=True)
    stopped.wait()
    node.kill_all_processes(check_alive=False, allow_graceful=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
