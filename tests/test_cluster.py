"""Cluster mode for real: PostgreSQL, a Prefect server on it, two process workers, a two-node Ray cluster and an
S3 server, all brought up on 127.0.0.1 by ``deployments.local_cluster`` (one stack for the module, stopped at the
end). The client is its own process knowing only the Prefect API URL (tests/cluster_client.py).

PostgreSQL comes from Debian (scripts/postgres.sh); without it these tests skip, unless QSFLOW_REQUIRE_POSTGRES=1
(CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import flow_run_events
from deployments import local_cluster, postgres
from deployments.processes import descendants

pytestmark = pytest.mark.cluster

CLIENT = Path(__file__).parent / "cluster_client.py"
PROGRAMS = Path(__file__).parent / "programs" / "cluster"
LOAD = 40
# Seconds without a heartbeat before a job counts as lost: Prefect's heartbeat comes every 30 s (its minimum, set by
# local_cluster), so 30 s are left for a late one on a loaded 2-core CI machine (a running job taken for lost would
# be retried while it still runs); `qsflow cluster up`'s default is 90.
LOST_AFTER = 60.0
FINAL = {"DONE", "ERROR", "CANCELED"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        postgres.bin_dir()
    except postgres.PostgresMissing as exc:
        if os.environ.get("QSFLOW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"QSFLOW_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))
    report = local_cluster.up(workers=2, worker_limit=4, lost_jobs_policy="retry", lost_after=LOST_AFTER)
    try:
        assert report["up"], report
        yield report
    finally:
        local_cluster.down()
    assert not any(local_cluster._any_alive(s) for s in [_as_state(report)]), "a process of the cluster survived"


def _as_state(report: dict) -> dict:
    return {"workers": report["workers"], "server_pid": report["prefect_server"]["pid"], "ray": report["ray"],
            "s3": report["s3"], "postgres": report["postgres"]}


def _client_env(url: str, home: Path) -> dict[str, str]:
    """The client's whole configuration: the API URL. Nothing of the cluster's or the test session's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "QSFLOW_", "RAY_", "AWS_"))}
    env.update(QSFLOW_HOST=url, QSFLOW_HOME=str(home))
    return env


def _client(url: str, home: Path, *args: str, timeout: float = 600) -> dict:
    done = subprocess.run([sys.executable, str(CLIENT), *args], env=_client_env(url, home), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def api(cluster):
    from deployments.connection import prefect_api

    with prefect_api(cluster["api_url"]) as client:
        yield client


def test_the_stack_is_on_loopback_and_postgres(cluster):
    assert cluster["api_url"].startswith("http://127.0.0.1:")
    assert cluster["s3"]["endpoint"].startswith("http://127.0.0.1:")
    assert cluster["ray"]["address"].startswith("127.0.0.1:")
    server_env = Path(f"/proc/{cluster['prefect_server']['pid']}/environ").read_bytes().split(b"\0")
    assert any(v.startswith(b"PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://") for v in server_env)
    assert [w["name"] for w in cluster["workers"]] == ["qsflow-cluster-worker-1", "qsflow-cluster-worker-2"]
    warm = os.environ.get("QSFLOW_WARM_WORKER", "1") != "0"
    for worker in cluster["workers"]:  # `qsflow worker --limit 4`: warm, or Prefect's stock worker it execs
        command = Path(f"/proc/{worker['pid']}/cmdline").read_bytes().split(b"\0")[1:]
        name = worker["name"].encode()
        if warm:
            assert command == [b"-m", b"deployments.cli", b"worker", b"--pool", b"qsflow", b"--name", name,
                               b"--limit", b"4", b""], command
            assert "forkserver ready" in Path(worker["log"]).read_text(errors="replace")
        else:
            assert command == [b"-m", b"prefect", b"worker", b"start", b"--pool", b"qsflow", b"--type", b"process",
                               b"--name", name, b"--limit", b"4", b""], command


def _flow_run_ids_under(api, pid: int, jobs: list[str]) -> set[str]:
    """Which of ``jobs`` run under ``pid``: the process the worker recorded for the run (``infrastructure_pid``;
    qsflow's warm worker forks it, so its /proc environ is the forkserver's), or a process whose environment names
    the run (PREFECT__FLOW_RUN_ID: a stock worker's run, or a job's program)."""
    from uuid import UUID

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    under = set(descendants(pid))
    ids = set()
    for child in under:
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"PREFECT__FLOW_RUN_ID="):
                ids.add(entry.split(b"=", 1)[1].decode())
    runs = api.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(j) for j in jobs])))
    ids |= {str(run.id) for run in runs if run.infrastructure_pid and int(run.infrastructure_pid) in under}
    return ids & set(jobs)


def _states(api, job_id: str) -> list[str]:
    return [s.name for s in api.read_flow_run_states(job_id)]


@pytest.fixture(scope="module")
def load(cluster, api, tmp_path_factory):
    """One load for the module (the time budget): a job with distributed tasks, then 40 jobs from a client
    process knowing only the API URL. As soon as worker 1 has finished one of them and runs two (the client may
    still be submitting), its machine dies: the worker and every process under it get SIGKILL. The cluster's policy
    here retries lost jobs on another worker."""
    from serverless_compat import QiskitFunction, ServerlessClient

    url = cluster["api_url"]
    observer = ServerlessClient(host=url)
    nodes_fn = observer.upload(QiskitFunction(title="cluster-nodes", entrypoint="nodes.py",
                                              working_dir=str(PROGRAMS)))
    nodes_job = nodes_fn.run(resource=local_cluster.SECOND_NODE_RESOURCE)
    home = tmp_path_factory.mktemp("cluster-client")
    began, began_at = time.monotonic(), time.time()
    out, err = home / "submit.out", home / "submit.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        submitter = subprocess.Popen([sys.executable, str(CLIENT), "submit", str(LOAD), "--sleep", "2"],
                                     env=_client_env(url, home), stdout=stdout, stderr=stderr)
    worker_1, worker_2 = cluster["workers"]
    deadline = time.monotonic() + 600
    seen_on_1: set[str] = set()
    while True:  # until worker 1 finished a job and runs two more, and worker 2 has started some
        jobs = _load_jobs(api)
        on_1 = _flow_run_ids_under(api, worker_1["pid"], jobs)
        seen_on_1 |= on_1
        finished = {j for j in seen_on_1 - on_1 if observer.job(j).status() == "DONE"}
        running = {j for j in on_1 if observer.job(j).status().startswith("RUNNING")}
        if finished and len(running) >= 2 and _flow_run_ids_under(api, worker_2["pid"], jobs):
            break
        assert submitter.poll() in (None, 0), err.read_text()[-3000:]
        assert time.monotonic() < deadline, "worker 1 never finished one job while running two"
        time.sleep(0.5)
    under_1 = _flow_run_ids_under(api, worker_1["pid"], _load_jobs(api))
    killed = local_cluster.kill_worker(worker_1["name"])
    killed_at = time.monotonic() - began
    assert submitter.wait(timeout=600) == 0, err.read_text()[-3000:]
    submitted_at = time.monotonic() - began
    submitted = json.loads(out.read_text().strip().splitlines()[-1])
    jobs = submitted["jobs"]
    assert under_1 <= set(jobs) and seen_on_1 <= set(jobs)
    collected = _client(url, home, "collect", *jobs, timeout=1200)
    nodes_job.wait()
    collected_at = time.monotonic() - began
    states = {j: api.read_flow_run_states(j) for j in jobs}
    retried_at = [s.timestamp.timestamp() - began_at for j in jobs for s in states[j] if s.name == "AwaitingRetry"]
    ended_at = max(states[j][-1].timestamp.timestamp() for j in jobs) - began_at
    print(f"load: worker 1 killed at {killed_at:.0f} s, {LOAD} jobs submitted at {submitted_at:.0f} s, "
          f"{len(retried_at)} retried at {sorted(round(t) for t in retried_at)} s, the last ended at {ended_at:.0f} s, "
          f"all collected at {collected_at:.0f} s; load average {os.getloadavg()}")
    return {"submitted": submitted, "jobs": jobs, "under_1": under_1, "killed": killed, "worker_1": worker_1,
            "report": collected["jobs"], "files": collected["files"], "nodes_job": nodes_job}


def _load_jobs(api) -> list[str]:
    """The load's jobs submitted so far (the client is still submitting): the runs of its function's deployment."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    runs = api.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["cluster-square"])))
    return [str(run.id) for run in runs]


def test_distributed_tasks_needing_the_second_nodes_resource_run_there(load):
    job = load["nodes_job"]
    assert job.status() == "DONE", job.logs()[-3000:]
    result = job.result()
    assert len(result["nodes"]) == 2
    assert len(result["with_resource"]) == 1
    assert set(result["pinned"]) == set(result["with_resource"])
    assert set(result["anywhere"]) <= set(result["nodes"])


def test_40_jobs_all_done_over_both_workers_with_their_own_results(load):
    report, jobs = load["report"], load["jobs"]
    assert len(set(jobs)) == LOAD
    statuses = {job_id: entry["status"] for job_id, entry in report.items()}
    assert all(status == "DONE" for status in statuses.values()), statuses
    results = [report[job_id]["result"] for job_id in jobs]
    assert [r["n"] for r in results] == list(range(LOAD))  # each job its own result: none lost, none duplicated
    assert all(r["square"] == r["n"] ** 2 for r in results)
    workers = [r["worker"] for r in results]
    assert set(workers) == {"qsflow-cluster-worker-1", "qsflow-cluster-worker-2"}, workers


def test_files_cross_workers_through_s3(load):
    results = [load["report"][job_id]["result"] for job_id in load["jobs"]]
    for worker in ("qsflow-cluster-worker-1", "qsflow-cluster-worker-2"):  # the client's upload, read on each
        assert {r["read"] for r in results if r["worker"] == worker} == {load["submitted"]["uploaded"]}
    assert load["files"] == {f"square-{n}.txt": f"{n} squared is {n * n}\n" for n in range(LOAD)}


def test_jobs_of_the_killed_worker_ran_again_on_the_other(load, api):
    assert load["worker_1"]["pid"] in load["killed"]
    retried = _retried(api, load["jobs"])
    assert retried & load["under_1"], {j: _states(api, j) for j in load["under_1"]}
    results = {j: load["report"][j]["result"] for j in load["jobs"]}
    for job_id in load["under_1"] | retried:
        # retried: finished by worker 2; not retried: it had finished on worker 1 just before the kill
        expected = "qsflow-cluster-worker-2" if job_id in retried else "qsflow-cluster-worker-1"
        assert results[job_id]["worker"] == expected, (job_id, _states(api, job_id))


def _retried(api, jobs: list[str]) -> set[str]:
    """The jobs the lost-jobs automation ran again (a run claimed or started on worker 1 just before the kill may
    not have been seen under it yet)."""
    return {j for j in jobs if "AwaitingRetry" in _states(api, j)}


def test_nothing_is_left_running(load, api):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    unfinished = api.read_flow_runs(flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]))))
    assert unfinished == []


def test_every_status_event_of_the_load_is_recorded(load, api):
    _every_job_reported(api, load["jobs"], _retried(api, load["jobs"]))


def _every_job_reported(api, jobs: list[str], lost: set[str]) -> None:
    """Each job's qsflow.job.status events are all there: QUEUED ... DONE (a retried job shows its retry)."""
    deadline = time.monotonic() + 60
    while True:
        seen: dict[str, list[str]] = {job_id: [] for job_id in jobs}
        for event in flow_run_events(api, "qsflow.job.status", jobs):
            seen[event.resource["qsflow.job"]].append(event.resource["qsflow.status"])
        complete = all(seen[j] == ["QUEUED", "INITIALIZING", "RUNNING", "DONE"] for j in jobs if j not in lost) and \
            all(seen[j][:1] == ["QUEUED"] and seen[j][-1:] == ["DONE"] for j in lost)
        if complete:
            return
        assert time.monotonic() < deadline, {j: s for j, s in seen.items() if s[-1:] != ["DONE"] or len(s) != 4}
        time.sleep(1)


def test_every_job_of_the_load_sent_heartbeats(load, api):
    """The lost-jobs automation sees a running job only through its heartbeats: runs forked by `qsflow worker`
    send them too (Prefect's engine, PREFECT_FLOWS_HEARTBEAT_FREQUENCY from the worker's environment)."""
    deadline = time.monotonic() + 60
    while True:
        beating = {e.resource.id.removeprefix("prefect.flow-run.")
                   for e in flow_run_events(api, "prefect.flow-run.heartbeat", load["jobs"])}
        if beating == set(load["jobs"]):
            return
        assert time.monotonic() < deadline, set(load["jobs"]) - beating
        time.sleep(1)


def test_no_database_is_locked_anywhere(cluster):
    logs = Path(cluster["dir"]).glob("*.log")
    for log in logs:
        text = log.read_text(errors="replace")
        assert "database is locked" not in text, log


def test_a_lost_job_ends_error_under_the_default_crash_policy(cluster, api):
    """The default policy, after the load (no other run is active, so the shortest wait Prefect's heartbeat allows
    is safe): a job a worker had claimed (Pending) when its machine died ends ERROR, its run Crashed; so does one
    whose machine died right after it entered Running, before any heartbeat."""
    from datetime import datetime, timedelta, timezone

    from prefect.states import Pending, Running, Scheduled

    from deployments import lost_jobs
    from serverless_compat import QiskitFunction, ServerlessClient

    lost_jobs.ensure_automation(api, "crash", within=lost_jobs.HEARTBEAT_SECONDS + 1)
    client = ServerlessClient(host=cluster["api_url"])
    client.upload(QiskitFunction(title="cluster-claimed", entrypoint="square.py", working_dir=str(PROGRAMS)))
    deployment = api.read_deployment_by_name("cluster-claimed/cluster-claimed")
    jobs = []
    for states in ([Pending()], [Pending(), Running()]):
        # Due tomorrow, so no worker takes it; then Pending, as when a worker claims a run (and Running, as when
        # it starts it; forced, since Prefect holds a run in Pending until its scheduled time). Nothing runs it or
        # sends a heartbeat: as if the worker's machine died right then.
        run = api.create_flow_run_from_deployment(
            deployment.id, parameters={**deployment.parameters, "arguments": {"n": 1, "read": "none.txt"}},
            state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1)))
        for state in states:
            assert api.set_flow_run_state(run.id, state, force=state.is_running()).status.value == "ACCEPT"
        jobs.append(client.job(str(run.id)))
    for job in jobs:
        assert job.wait(timeout=180) == "ERROR", _states(api, job.job_id)
        assert api.read_flow_run(job.job_id).state.type.value == "CRASHED"
        assert "stopped reporting" in api.read_flow_run(job.job_id).state.message
