"""A client of the local cluster, run as its own process by tests/test_cluster.py and bench/cluster.py.

It knows the Prefect API URL (``QSFLOW_HOST``) and nothing else: no qsflow home of the cluster's, no Ray
address; the S3 store's settings come from the ``qsflow-storage`` block on that server.

    python tests/cluster_client.py submit N [--sleep S]   upload the function and a data file, run N jobs;
                                                           print {"jobs": [ids], "uploaded": text} as JSON
    python tests/cluster_client.py collect ID...          wait for the jobs; print each one's status and result,
                                                           and the files the jobs wrote, downloaded
"""

from __future__ import annotations

import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serverless_compat import QiskitFunction, ServerlessClient

PROGRAM_DIR = Path(__file__).parent / "programs" / "cluster"
SUBMITTERS = 4
DATA_NAME = "cluster-input.txt"
DATA_TEXT = "uploaded by the cluster client\n"


def submit(count: int, sleep: float) -> dict:
    client = ServerlessClient()
    fn = client.upload(QiskitFunction(title="cluster-square", entrypoint="square.py", working_dir=str(PROGRAM_DIR)))
    with tempfile.TemporaryDirectory() as directory:
        source = Path(directory) / DATA_NAME
        source.write_text(DATA_TEXT)
        client.file_upload(str(source), function=fn)
    # a few at once, as several users' clients would submit (one run() waits on the API and the store)
    with ThreadPoolExecutor(max_workers=SUBMITTERS) as pool:
        jobs = list(pool.map(lambda n: fn.run(n=n, read=DATA_NAME, write=f"square-{n}.txt", sleep=sleep),
                             range(count)))
    return {"jobs": [job.job_id for job in jobs], "uploaded": DATA_TEXT}


def collect(job_ids: list[str]) -> dict:
    client = ServerlessClient()
    fn = client.function("cluster-square")
    report = {}
    for job_id in job_ids:
        job = client.job(job_id)
        status = job.wait()
        report[job_id] = {"status": status, "result": job.result() if status == "DONE" else None}
    files = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in client.files(function=fn):
            if name.startswith("square-"):
                files[name] = Path(client.file_download(name, function=fn, download_location=directory)).read_text()
    return {"jobs": report, "files": files}


def main(argv: list[str]) -> int:
    if argv[:1] == ["submit"]:
        sleep = float(argv[argv.index("--sleep") + 1]) if "--sleep" in argv else 0.0
        print(json.dumps(submit(int(argv[1]), sleep)))
        return 0
    if argv[:1] == ["collect"]:
        print(json.dumps(collect(argv[1:])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
