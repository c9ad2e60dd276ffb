"""Data-store throughput and memory: the QsflowStore block against raw s3fs and a plain copy.

    python -m bench.files [--mib 256]

Starts moto's S3 server in its own process on 127.0.0.1, writes an h5 file of --mib MiB, then
measures, in the same run: upload + download through the block on S3 vs s3fs put/get, and the
block on a local directory vs shutil.copyfile; and the peak RSS growth of this process while the
block uploads (streaming keeps it flat, whatever the file size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    def __init__(self):
        self.base = self.peak = 0.0

    def __enter__(self):
        if not self.base:
            self.base = self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return self.peak - self.base


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement; the best counts")
    args = parser.parse_args()

    import s3fs
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem
    from prefect.types import SecretDict

    from blocks.storage import QsflowStore
    from deployments import data_files
    from deployments.access import Principal

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        settings = {"client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        secrets = {"key": "bench", "secret": "bench"}
        raw = s3fs.S3FileSystem(**settings, **secrets)
        for _ in range(100):
            try:
                raw.call_s3("create_bucket", Bucket="bench")
                break
            except Exception:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="qsflow-bench-files-") as tmp:
            tmp = Path(tmp)
            source = tmp / "data.h5"
            with h5py.File(source, "w") as handle:
                handle.create_dataset("x", data=np.random.default_rng(0).random(args.mib * 1024 * 1024 // 8))
            size_mib = source.stat().st_size / 2**20

            s3_store = QsflowStore(filesystem=RemoteFileSystem(basepath="s3://bench/qsflow", settings=settings),
                                   secret_settings=SecretDict(secrets))
            local_store = QsflowStore(filesystem=LocalFileSystem(basepath=str(tmp / "store")))
            scope = data_files.user_scope(Principal("bench"), None)
            raw.invalidate_cache()

            # The block's uploads go first, so their RSS is measured before s3fs's own buffers exist.
            best: dict[str, float] = {}
            rss = PeakRss()
            local_rss = PeakRss()

            def keep(key: str, seconds: float) -> None:
                best[key] = min(seconds, best.get(key, float("inf")))

            for _ in range(args.repeat):
                with rss:
                    keep("block_put", _timed(lambda: data_files.upload(s3_store, scope, source)))
                keep("block_get", _timed(lambda: data_files.download(s3_store, scope, "data.h5", "s3_back.h5", str(tmp))))
                with local_rss:
                    keep("local_put", _timed(lambda: data_files.upload(local_store, scope, source)))
                keep("local_get", _timed(lambda: data_files.download(local_store, scope, "data.h5", "local_back.h5", str(tmp))))
                keep("raw_put", _timed(lambda: raw.put_file(str(source), "bench/raw/data.h5")))
                keep("raw_get", _timed(lambda: raw.get_file("bench/raw/data.h5", str(tmp / "raw_back.h5"))))
                keep("copy", _timed(lambda: shutil.copyfile(source, tmp / "copy.h5")))
            block_put, block_get, raw_put, raw_get = best["block_put"], best["block_get"], best["raw_put"], best["raw_get"]
            local_put, local_get, copy = best["local_put"], best["local_get"], best["copy"]
            assert (tmp / "s3_back.h5").stat().st_size == source.stat().st_size
    finally:
        server.terminate()
        server.wait()

    def rate(seconds: float) -> float:
        return size_mib / seconds

    print(f"file: {size_mib:.0f} MiB h5; S3: moto server on 127.0.0.1; machine: {os.cpu_count()} cores; best of {args.repeat}")
    print(f"S3 upload   block {rate(block_put):7.1f} MiB/s   raw s3fs {rate(raw_put):7.1f} MiB/s   ratio {raw_put / block_put:.2f}x")
    print(f"S3 download block {rate(block_get):7.1f} MiB/s   raw s3fs {rate(raw_get):7.1f} MiB/s   ratio {raw_get / block_get:.2f}x")
    print(f"local put   block {rate(local_put):7.1f} MiB/s   copyfile {rate(copy):7.1f} MiB/s   ratio {copy / local_put:.2f}x")
    print(f"local get   block {rate(local_get):7.1f} MiB/s   copyfile {rate(copy):7.1f} MiB/s   ratio {copy / local_get:.2f}x")
    print(f"peak RSS growth during the S3 upload: {rss.growth:.0f} MiB; local upload: {local_rss.growth:.0f} MiB "
          "(s3fs parts of 8 MiB, 4 in flight; local: a file copy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
