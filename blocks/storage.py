"""One storage path for everything qsflow keeps: program archives, job results, data files.

:class:`QsflowStore` is a Prefect block wrapping one of Prefect's writable filesystems: a
``LocalFileSystem`` under qsflow's home by default, or a ``RemoteFileSystem`` (``s3://bucket/prefix``
with s3fs settings) on a cluster. Writes are atomic: content goes to a temporary name first and is
renamed into place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import uuid
from typing import IO, ClassVar, Iterator, Optional, Union

import fsspec
from prefect.blocks.core import Block
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect.types import SecretDict
from pydantic import Field, PrivateAttr

from blocks.file_types import DEFAULT_ALLOWED_TYPES

_PARTIAL = ".qsflow-partial-"


class QsflowStore(Block):
    """Where qsflow keeps uploaded programs, job results and data files.

    Example:
        Load the store a qsflow server uses and list a user's data files:
        ```python
        from blocks import QsflowStore

        store = QsflowStore.load("BLOCK_NAME")
        store.list_files("data/users/local")
        ```
    """

    _block_type_name: ClassVar[str] = "qsflow Store"
    _block_type_slug: ClassVar[str] = "qsflow-store"
    _description: ClassVar[str] = (
        "Storage for qsflow: uploaded program archives, job results and /data files, on a "
        "local directory or an S3 bucket."
    )
    _documentation_url: ClassVar[Optional[str]] = "https://docs.prefect.io/v3/develop/blocks"

    filesystem: Union[LocalFileSystem, RemoteFileSystem] = Field(
        default=...,
        description=(
            "The Prefect filesystem holding qsflow's files: LocalFileSystem(basepath=...) on one "
            "machine, RemoteFileSystem(basepath='s3://bucket/prefix', settings={...}) on a cluster."
        ),
    )
    secret_settings: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description=(
            "Credentials for a remote filesystem (e.g. s3fs's key and secret), merged into the "
            "filesystem's settings; kept secret in the API and the UI, unlike RemoteFileSystem.settings."
        ),
    )

    _remote_cache: Optional[fsspec.AbstractFileSystem] = PrivateAttr(default=None)

    allowed_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_TYPES),
        description=(
            "Data file types accepted by file_upload, checked by name and content: any of tar "
            "(plain or gzip), h5, gzip, zip, json, txt, csv. ['tar', 'h5'] is the seed's strict mode."
        ),
    )

    def local_path(self, relative: str) -> Optional[str]:
        """The path on this machine of ``relative`` when the store is a local directory, else None."""
        if isinstance(self.filesystem, RemoteFileSystem):
            return None
        return self._path(relative)

    def _fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        if isinstance(self.filesystem, RemoteFileSystem):
            return self._remote_fs(), self.filesystem.basepath.rstrip("/")
        return fsspec.filesystem("file", auto_mkdir=True), str(self.filesystem.basepath).rstrip("/")

    def _remote_fs(self) -> fsspec.AbstractFileSystem:
        assert isinstance(self.filesystem, RemoteFileSystem)
        secrets = self.secret_settings.get_secret_value() if self.secret_settings else {}
        if not secrets:
            return self.filesystem.filesystem
        if self._remote_cache is None:
            protocol = self.filesystem.basepath.split("://", 1)[0]
            settings = {**self.filesystem.settings, **secrets}
            object.__setattr__(self, "_remote_cache", fsspec.filesystem(protocol, **settings))
        return self._remote_cache

    def _path(self, relative: str) -> str:
        relative = relative.strip("/")
        if not relative or ".." in relative.split("/"):
            raise ValueError(f"Invalid storage path {relative!r}: give a relative path without '..'.")
        _, root = self._fs()
        return f"{root}/{relative}"

    def write_bytes(self, relative: str, content: bytes) -> None:
        """Write ``content`` at ``relative``, atomically."""
        fs, _ = self._fs()
        with self._atomic_target(relative) as destination, fs.open(destination, "wb") as handle:
            handle.write(content)

    def _is_s3(self) -> bool:
        return isinstance(self.filesystem, RemoteFileSystem) and self.filesystem.basepath.startswith(("s3://", "s3a://"))

    def _writes_whole_objects(self) -> bool:
        """Object stores (S3, GCS, Azure) show an object only once its upload completes."""
        if not isinstance(self.filesystem, RemoteFileSystem):
            return False
        return self.filesystem.basepath.split("://", 1)[0] in {"s3", "s3a", "gs", "gcs", "az", "abfs"}

    @contextlib.contextmanager
    def _atomic_target(self, relative: str) -> Iterator[str]:
        """Yield where to write ``relative`` so that readers see it whole or not at all."""
        fs, _ = self._fs()
        target = self._path(relative)
        if self._writes_whole_objects():
            yield target
            return
        partial = self._partial_name(target)
        try:
            yield partial
            fs.mv(partial, target)
        except BaseException:
            if fs.exists(partial):
                fs.rm(partial)
            raise

    def upload_stream(self, relative: str, source: IO[bytes], chunk_size: int = 8 << 20) -> int:
        """Copy ``source`` into storage at ``relative`` in chunks, atomically; return the size."""
        fs, _ = self._fs()
        size = 0
        with self._atomic_target(relative) as destination, fs.open(destination, "wb") as handle:
            while chunk := source.read(chunk_size):
                handle.write(chunk)
                size += len(chunk)
        return size

    def upload_file(self, relative: str, local_path: str) -> int:
        """Copy the local file ``local_path`` into storage at ``relative``, atomically; return the size."""
        fs, _ = self._fs()
        # s3fs sends up to 10 parts of 50 MiB at once by default; smaller, fewer parts keep memory flat.
        options = {"chunksize": 8 << 20, "max_concurrency": 4} if self._is_s3() else {}
        with self._atomic_target(relative) as destination:
            fs.put_file(local_path, destination, **options)
        return os.path.getsize(local_path)

    def open_read(self, relative: str) -> IO[bytes]:
        fs, _ = self._fs()
        return fs.open(self._path(relative), "rb")

    def read_bytes(self, relative: str) -> bytes:
        with self.open_read(relative) as handle:
            return handle.read()

    def exists(self, relative: str) -> bool:
        fs, _ = self._fs()
        return fs.exists(self._path(relative))

    def list_names(self, relative_dir: str) -> list[str]:
        """Names directly under ``relative_dir`` (files and folders), sorted; [] if it is absent."""
        fs, _ = self._fs()
        path = self._path(relative_dir)
        if not fs.exists(path):
            return []
        names = (posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))
        return sorted(n for n in names if _PARTIAL not in n)

    def list_files(self, relative_dir: str) -> list[str]:
        """Names of the files (not folders) directly under ``relative_dir``, sorted."""
        fs, _ = self._fs()
        path = self._path(relative_dir)
        if not fs.exists(path):
            return []
        entries = fs.ls(path, detail=True)
        names = (posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "file")
        return sorted(n for n in names if _PARTIAL not in n)

    def download_to(self, relative: str, target: str) -> int:
        """Copy ``relative`` to the local file ``target`` (atomically); return the size."""
        fs, _ = self._fs()
        directory = os.path.dirname(os.path.abspath(target))
        handle, partial = tempfile.mkstemp(dir=directory, prefix=".qsflow-download-")
        os.close(handle)
        try:
            fs.get_file(self._path(relative), partial)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        return os.path.getsize(target)

    def delete(self, relative: str, recursive: bool = False) -> None:
        fs, _ = self._fs()
        fs.rm(self._path(relative), recursive=recursive)

    @staticmethod
    def _partial_name(target: str) -> str:
        head, tail = posixpath.split(target)
        return f"{head}/{_PARTIAL}{uuid.uuid4().hex}-{tail}"


def load_store(create_default_under: Optional[str] = None) -> QsflowStore:
    """The configured store (the block saved as ``qsflow-storage``).

    When none is saved and ``create_default_under`` is given, save a LocalFileSystem store there.
    """
    from prefect.exceptions import ObjectNotFound

    from blocks import prefetched
    from deployments.settings import STORAGE_BLOCK

    try:
        return prefetched.load(QsflowStore, STORAGE_BLOCK)
    except (ValueError, ObjectNotFound):
        if create_default_under is None:
            raise RuntimeError(
                f"No qsflow storage block named {STORAGE_BLOCK!r} is saved on this Prefect server. "
                "Save one, e.g. QsflowStore(filesystem=RemoteFileSystem(basepath='s3://bucket/qsflow'))"
                f".save({STORAGE_BLOCK!r}), or use the embedded default."
            ) from None
    store = QsflowStore(filesystem=LocalFileSystem(basepath=create_default_under))
    store.save(STORAGE_BLOCK, overwrite=True)
    return store
