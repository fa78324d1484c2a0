"""The file:// store: atomic writes, create-if-absent and replace-if-unchanged under real concurrency."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import pytest

from fleetbuild.store.api import NotFound, PreconditionFailed, StoreError
from fleetbuild.store.local import LocalStore


def test_roundtrip_and_listing(tmp_path):
    store = LocalStore("file://./artifacts", tmp_path)
    assert store.root == tmp_path / "artifacts"
    etag = store.write_bytes("builds/abc.json", b"{}")
    assert store.read_bytes("builds/abc.json") == (b"{}", etag) and etag == hashlib.sha256(b"{}").hexdigest()
    source = tmp_path / "engine.plan"
    source.write_bytes(b"x" * 3_000_000)
    store.upload_file("blobs/sha256/" + "a" * 64, source)
    store.download_file("blobs/sha256/" + "a" * 64, tmp_path / "back.plan")
    assert (tmp_path / "back.plan").read_bytes() == source.read_bytes()
    assert sorted(store.list()) == ["blobs/sha256/" + "a" * 64, "builds/abc.json"]
    assert list(store.list("builds/")) == ["builds/abc.json"]
    store.delete("builds/abc.json")
    with pytest.raises(NotFound):
        store.read_bytes("builds/abc.json")
    assert not [p for p in (tmp_path / "artifacts").rglob(".tmp-*")]


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", "", "a/../../b", "a b"])
def test_keys_cannot_escape(tmp_path, key):
    with pytest.raises(ValueError):
        LocalStore("file://s", tmp_path).write_bytes(key, b"")


def test_conditional_writes(tmp_path):
    store = LocalStore(str(tmp_path / "s"), tmp_path)
    first = store.write_bytes("releases/p/1/index.json", b"1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.write_bytes("releases/p/1/index.json", b"2", if_none_match=True)
    second = store.write_bytes("releases/p/1/index.json", b"2", if_match=first)
    with pytest.raises(PreconditionFailed):
        store.write_bytes("releases/p/1/index.json", b"3", if_match=first)
    assert store.read_bytes("releases/p/1/index.json") == (b"2", second)


def _add_entry(root: str, name: str) -> None:
    store = LocalStore(root, None)
    while True:
        try:
            data, etag = store.read_bytes("index.json")
        except NotFound:
            try:
                store.write_bytes("index.json", json.dumps([name]).encode(), if_none_match=True)
                return
            except PreconditionFailed:
                continue
        try:
            store.write_bytes("index.json", json.dumps(json.loads(data) + [name]).encode(), if_match=etag)
            return
        except PreconditionFailed:
            continue


def test_concurrent_read_modify_write_loses_nothing(tmp_path):
    root = str(tmp_path / "store")
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.starmap(_add_entry, [(root, f"job{i}") for i in range(32)])
    data, _ = LocalStore(root, None).read_bytes("index.json")
    assert sorted(json.loads(data)) == sorted(f"job{i}" for i in range(32))


def test_unwritable_store_is_a_one_line_store_error(tmp_path):
    (tmp_path / "blocked").write_text("a file where the store's folder should be")
    with pytest.raises(StoreError) as err:
        LocalStore(str(tmp_path / "blocked"), tmp_path).write_bytes("a/b", b"x")
    assert str(err.value).startswith(f"{tmp_path / 'blocked'}: a/b: ") and "\n" not in str(err.value)
