"""Blocks read together (``blocks.prefetched``), on the session's Prefect server: served as ``Block.load`` serves
them (nested blocks, secrets, the error for one not saved) from the one read."""

from __future__ import annotations

import uuid

import pytest
from prefect.blocks.system import Secret
from prefect.filesystems import LocalFileSystem

from blocks import prefetched
from blocks.storage import QsflowStore
from tasks.ray_block import RayClusterConfig


def test_blocks_read_together_are_the_blocks_load_returns(prefect, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    store_name, secret_name, absent = f"store-{suffix}", f"secret-{suffix}", f"absent-{suffix}"
    QsflowStore(filesystem=LocalFileSystem(basepath=str(tmp_path))).save(store_name)
    Secret(value={"token": "t0k3n", "channel": "ibm_quantum_platform"}).save(secret_name)

    with prefetched.blocks([(QsflowStore, store_name), (Secret, secret_name), (RayClusterConfig, absent)]):
        # Deleted on the server after the read: what load serves now comes from that one read.
        prefect.delete_block_document(QsflowStore.load(store_name)._block_document_id)
        prefect.delete_block_document(Secret.load(secret_name)._block_document_id)
        store = prefetched.load(QsflowStore, store_name)
        secret = prefetched.load(Secret, secret_name)
        with pytest.raises(ValueError, match=absent):
            prefetched.load(RayClusterConfig, absent)

    assert isinstance(store.filesystem, LocalFileSystem) and store.filesystem.basepath == str(tmp_path)
    assert store._block_document_name == store_name
    assert secret.get() == {"token": "t0k3n", "channel": "ibm_quantum_platform"}  # the value, not a mask
    # Outside the read, and for a block it did not read, load asks the server, as Block.load does.
    with pytest.raises(ValueError):
        prefetched.load(QsflowStore, store_name)
    with prefetched.blocks([(Secret, absent)]):
        with pytest.raises(ValueError):
            prefetched.load(QsflowStore, store_name)


def test_a_block_of_another_type_with_the_same_name_is_not_served(prefect):
    name = f"shared-{uuid.uuid4().hex[:8]}"
    Secret(value="not an address").save(name)
    with prefetched.blocks([(RayClusterConfig, name), (Secret, name)]):
        with pytest.raises(ValueError, match=name):
            prefetched.load(RayClusterConfig, name)
        assert prefetched.load(Secret, name).get() == "not an address"


def test_every_wanted_block_is_served_when_other_types_share_their_names(prefect, tmp_path):
    """Three types by three names: the one read matches all nine saved pairs, and each wanted one is among them."""
    suffix = uuid.uuid4().hex[:8]
    names = [f"a-{suffix}", f"b-{suffix}", f"c-{suffix}"]
    for name in names:
        QsflowStore(filesystem=LocalFileSystem(basepath=str(tmp_path / name))).save(name)
        Secret(value=f"secret {name}").save(name)
        RayClusterConfig(address=f"ray://{name}:10001").save(name)
    wanted = [(QsflowStore, names[0]), (Secret, names[1]), (RayClusterConfig, names[2])]
    with prefetched.blocks(wanted):
        for name in names:  # deleted after the read, as in the first test
            for cls in (QsflowStore, Secret, RayClusterConfig):
                prefect.delete_block_document(cls.load(name)._block_document_id)
        assert prefetched.load(QsflowStore, names[0]).filesystem.basepath == str(tmp_path / names[0])
        assert prefetched.load(Secret, names[1]).get() == f"secret {names[1]}"
        assert prefetched.load(RayClusterConfig, names[2]).address == f"ray://{names[2]}:10001"
