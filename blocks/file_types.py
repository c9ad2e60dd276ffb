"""Which data files the store accepts, judged by content as well as by name.

A file's name gives its claimed type (``.tar``, ``.h5`` ...); the content must then really be of
that type: tarfile, h5py, zipfile and json open it, and puremagic identifies what else it is for
the error message. Anything else is refused before a byte is written to the store.
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Optional

# Qiskit Serverless's seed accepts tar and h5; today's gateway also gzip, zip, JSON, text and CSV.
DEFAULT_ALLOWED_TYPES = ["tar", "h5", "gzip", "zip", "json", "txt", "csv"]
SEED_ALLOWED_TYPES = ["tar", "h5"]

_SUFFIXES = {
    ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar",
    ".h5": "h5", ".hdf5": "h5",
    ".gz": "gzip",
    ".zip": "zip",
    ".json": "json",
    ".txt": "txt",
    ".csv": "csv",
}
_TEXT_SAMPLE = 1 << 20


def claimed_type(name: str) -> Optional[str]:
    lowered = name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return _SUFFIXES[suffix]
    return None


def _is_h5(path: Path) -> bool:
    import h5py

    return bool(h5py.is_hdf5(str(path)))


def _is_gzip(path: Path) -> bool:
    """A gzip stream whose header is valid and whose first block decompresses (not just the magic bytes)."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as handle:
            handle.read(1)
        return True
    except (OSError, EOFError, zlib.error):
        return False


def _is_json(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            json.load(handle)
        return True
    except (ValueError, UnicodeDecodeError):
        return False


def _is_text(path: Path) -> bool:
    with open(path, "rb") as handle:
        sample = handle.read(_TEXT_SAMPLE)
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's end is still text.
        return exc.start >= len(sample) - 3
    return True


_CHECKS: dict[str, Callable[[Path], bool]] = {
    "tar": tarfile.is_tarfile,
    "h5": _is_h5,
    "gzip": _is_gzip,
    "zip": zipfile.is_zipfile,
    "json": _is_json,
    "txt": _is_text,
    "csv": _is_text,
}


def _looks_like(path: Path) -> str:
    import puremagic

    if path.stat().st_size == 0:
        return "an empty file"
    try:
        return puremagic.from_file(str(path), mime=False) or "unknown content"
    except (puremagic.PureError, ValueError):
        return "unknown content"


def check_file(name: str, path: Path, allowed: list[str]) -> str:
    """Return the file's type; raise ValueError in Qiskit Serverless's shape when it is not allowed."""
    kind = claimed_type(name)
    names = ", ".join(allowed)
    if kind is None or kind not in allowed:
        raise ValueError(
            f"Upload failed: {name!r}. Uploaded file is not a valid type. Allowed types: {names} "
            "(by file name and content)."
        )
    if not _CHECKS[kind](path):
        raise ValueError(
            f"Upload failed: {name!r}. Uploaded file is not a valid type: it is named as {kind} but "
            f"its content is not ({_looks_like(path)}). Allowed types: {names}."
        )
    return kind


def validate_name(name: str) -> str:
    """A data file name is flat: no folders, no '..', no control characters."""
    if not isinstance(name, str) or not name or name in {".", ".."}:
        raise ValueError(f"Invalid file name {name!r}: give a plain file name such as 'results.tar'.")
    if "/" in name or "\\" in name:
        raise ValueError(
            f"Invalid file name {name!r}: the data store is flat (no folders); "
            f"use a name such as {name.replace('/', '_').replace(chr(92), '_').lstrip('._')!r}."
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"Invalid file name {name!r}: remove control characters (including NUL).")
    if name.startswith(".") or len(name) > 255:
        raise ValueError(f"Invalid file name {name!r}: it may not start with '.' or exceed 255 characters.")
    return name
