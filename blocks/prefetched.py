"""Blocks read together: a job's runner needs up to three saved blocks at its start (the store, the Ray
cluster's address, the user's IBM Quantum credentials), usually two of them absent. Read one by one they cost
three API requests per job; :func:`blocks` reads them in one (Prefect's block-document filter) and
:func:`load` serves them, within its ``with``, exactly as ``Block.load`` would: the same block, the same
``prefect.block.*.loaded`` event, the same ``ValueError`` for one that is not saved.

    with prefetched.blocks([(QsflowStore, "qsflow-storage"), (Secret, "qsflow-ibm-quantum-alice")]):
        store = prefetched.load(QsflowStore, "qsflow-storage")   # no request
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterable, Iterator, Optional, TypeVar

from prefect.blocks.core import Block

B = TypeVar("B", bound=Block)

# (block type slug, document name) -> its document, or None when no such block is saved
_read: contextvars.ContextVar[Optional[dict[tuple[str, str], Any]]] = contextvars.ContextVar(
    "qsflow_prefetched_blocks", default=None)


@contextlib.contextmanager
def blocks(wanted: Iterable[tuple[type[Block], str]]) -> Iterator[None]:
    """Read the blocks ``wanted`` (class, saved name) in one request; :func:`load` serves them until the end."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import BlockDocument

    keys = {(cls.get_block_type_slug(), name) for cls, name in wanted}
    slugs, names = sorted({slug for slug, _ in keys}), sorted({name for _, name in keys})
    with get_client(sync_client=True) as client:
        # The filter matches every saved (type, name) pair of these types and names, wanted or not (a Secret named
        # like the store): at most one document per pair, so room for all of them.
        response = client.request("POST", "/block_documents/filter", json={
            "block_documents": {"name": {"any_": names}}, "block_types": {"slug": {"any_": slugs}},
            "include_secrets": True, "limit": len(slugs) * len(names)})
        response.raise_for_status()
    found: dict[tuple[str, str], Any] = dict.fromkeys(keys)
    for item in response.json():
        document = BlockDocument.model_validate(item)
        key = (document.block_type.slug if document.block_type else "", document.name or "")
        if key in found:
            found[key] = document
    token = _read.set(found)
    try:
        yield
    finally:
        _read.reset(token)


def load(cls: type[B], name: str) -> B:
    """``cls.load(name)``: from the blocks read by the enclosing :func:`blocks` when it read this one, else from
    the API. Raises ``ValueError`` when no such block is saved, as ``Block.load`` does."""
    read = _read.get()
    key = (cls.get_block_type_slug(), name)
    if read is None or key not in read:
        return cls.load(name)
    document = read[key]
    if document is None:
        raise ValueError(f"Unable to find block document named {name} for block type {key[0]}")
    # Prefect's own step after reading the document in Block.load (validation, nested blocks, the loaded event).
    return cls._load_from_block_document(document)
