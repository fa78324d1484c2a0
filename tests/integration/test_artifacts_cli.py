"""`fleetbuild artifacts`: verify finds corruption and missing pieces; gc keeps referenced and recent blobs."""
from __future__ import annotations

import hashlib
import json
import os
import time

from fleetbuild.store import signing
from fleetbuild.plugin.manager import Plugins
from fleetbuild.store.publish import publish


def populate(project, minimal, signed=True):
    project.write(minimal.replace('name = "demo"', 'name = "p"') + '[signing]\nkey = "keys/fleetbuild.key"\n')
    _, public, key = signing.generate(project.root / "keys", {})
    store = Plugins(entry_points=False).store_for("file://./artifacts", {}, project.root, "f", {})
    entries = {}
    for index in range(3):
        engine = b"vtrt" + bytes([index]) * 100
        digest = hashlib.sha256(engine).hexdigest()
        store.write_bytes(f"blobs/sha256/{digest}", engine)
        manifest = json.dumps({"build_key": f"k{index}"}).encode()
        store.write_bytes(f"builds/k{index}.json.minisig", key.sign(manifest, "m").encode())
        store.write_bytes(f"builds/k{index}.json", manifest.replace(b"}", b', "engine": {"sha256": "%s"}}' % digest.encode()))
        entries[f"m{index}/t4/fp16"] = {"target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5",
                                        "tensorrt": {"flavor": "tensorrt", "version": "10.3.0.26"},
                                        "build_key": f"k{index}", "manifest": f"builds/k{index}.json",
                                        "engine": {"file": "engine.plan", "sha256": digest, "size": len(engine)}}
    publish(store, "p", "1.0", entries, key if signed else None)
    return store, public, entries


def test_verify_finds_every_kind_of_damage(project, cli, minimal):
    store, public, entries = populate(project, minimal)
    assert cli("artifacts", "verify", "1.0").code == 1          # manifests were re-written after signing: caught
    for index in range(3):                                      # re-sign the manifests as written
        key = signing.load(project.root / "keys" / "fleetbuild.key", {})
        data = store.read_bytes(f"builds/k{index}.json")[0]
        store.write_bytes(f"builds/k{index}.json.minisig", key.sign(data, "m").encode())
    ok = cli("artifacts", "verify", "1.0")
    assert ok.code == 0 and ok.out.strip() == "p 1.0: signature valid, 3 engines present and intact"
    blobs = project.root / "artifacts" / "blobs" / "sha256"
    (blobs / entries["m0/t4/fp16"]["engine"]["sha256"]).write_bytes(b"vtrt flipped bits")
    (blobs / entries["m1/t4/fp16"]["engine"]["sha256"]).unlink()
    result = cli("artifacts", "verify", "1.0", "--public-key", str(public))
    flat = " ".join(result.out.split())
    assert result.code == 1 and "2 problems" in flat
    assert "m0/t4/fp16 │ engine blobs/sha256/" in flat and "is corrupted" in flat
    assert "m1/t4/fp16 │ engine blobs/sha256/" in flat and "is missing" in flat
    _, other, _ = signing.generate(project.root / "other", {})
    assert "signed by another key" in " ".join(cli("artifacts", "verify", "1.0", "--public-key", str(other)).out.split())


def test_list_show_and_unknown_version(project, cli, minimal):
    populate(project, minimal)
    listing = json.loads(cli("artifacts", "list", "--json").out)
    assert listing["releases"][0]["version"] == "1.0" and listing["blobs"] == 3 and listing["builds"] == 3
    assert sorted(json.loads(cli("artifacts", "show", "1.0", "--json").out)["entries"]) == [
        "m0/t4/fp16", "m1/t4/fp16", "m2/t4/fp16"]
    result = cli("artifacts", "show", "9.9")
    assert result.code == 2 and result.err == ("fleetbuild: error: release p 9.9 is not in the store "
                                               "file://./artifacts; published: 1.0\n")


def test_gc_deletes_only_old_unreferenced_blobs(project, cli, minimal):
    store, _, _ = populate(project, minimal)
    blobs = project.root / "artifacts" / "blobs" / "sha256"
    old, fresh = blobs / ("a" * 64), blobs / ("b" * 64)
    old.write_bytes(b"orphan")
    fresh.write_bytes(b"upload in flight")
    past = time.time() - 48 * 3600
    os.utime(old, (past, past))
    dry = cli("artifacts", "gc", "--dry-run")
    assert dry.out.splitlines() == [f"would delete blobs/sha256/{'a' * 64}", "1 unreferenced engines to delete, 4 kept"]
    assert old.exists()
    assert cli("artifacts", "gc").code == 0
    assert not old.exists() and fresh.exists() and len(list(blobs.iterdir())) == 4


def test_gc_keep_releases_spares_channels_and_shared_manifests(project, cli, minimal):
    """Releases 1.0 (m0, m1, m2), 0.9 (m4), 1.1 (m0 + a new m3), 1.2 (m3), channel stable -> 1.0:
    keeping the newest one keeps 1.2 and, pinned by its channel, 1.0; 0.9 and 1.1 go, and with them
    only what no kept release names (m4 and its engine; nothing of m0, shared with 1.0)."""
    from fleetbuild.store.publish import set_channel

    store, public, entries = populate(project, minimal)
    key = signing.load(project.root / "keys" / "fleetbuild.key", {})
    engine = b"vtrt" + b"\x07" * 100
    digest = hashlib.sha256(engine).hexdigest()
    store.write_bytes(f"blobs/sha256/{digest}", engine)
    store.write_bytes("builds/k3.json", json.dumps({"build_key": "k3", "engine": {"sha256": digest}}).encode())
    m3 = dict(entries["m0/t4/fp16"], build_key="k3", manifest="builds/k3.json",
              engine={"file": "engine.plan", "sha256": digest, "size": len(engine)})
    only = b"vtrt" + b"\x09" * 100
    only_digest = hashlib.sha256(only).hexdigest()
    store.write_bytes(f"blobs/sha256/{only_digest}", only)
    store.write_bytes("builds/k4.json", json.dumps({"build_key": "k4", "engine": {"sha256": only_digest}}).encode())
    m4 = dict(entries["m0/t4/fp16"], build_key="k4", manifest="builds/k4.json",
              engine={"file": "engine.plan", "sha256": only_digest, "size": len(only)})
    time.sleep(0.01)
    publish(store, "p", "0.9", {"m4/t4/fp16": m4}, key)
    time.sleep(0.01)
    publish(store, "p", "1.1", {"m0/t4/fp16": entries["m0/t4/fp16"], "m3/t4/fp16": m3}, key)
    time.sleep(0.01)
    publish(store, "p", "1.2", {"m3/t4/fp16": m3}, key)
    index_10 = json.loads(store.read_bytes("releases/p/1.0/index.json")[0])
    set_channel(store, "p", "stable", index_10, key)
    before = set(store.list(""))
    dry = cli("artifacts", "gc", "--keep-releases", "1", "--grace-hours", "0", "--dry-run")
    assert dry.code == 0 and "would remove release p/1.1" in dry.out and set(store.list("")) == before
    result = cli("artifacts", "gc", "--keep-releases", "1", "--grace-hours", "0")
    assert result.code == 0, result.err
    versions = {k.split("/")[2] for k in store.list("releases/p/") if k.endswith("index.json")}
    assert versions == {"1.0", "1.2"}
    assert all(store.exists(f"builds/k{i}.json") for i in range(4))       # each still named by a kept release
    assert not store.exists("builds/k4.json") and not store.exists(f"blobs/sha256/{only_digest}")   # only 0.9's
    assert cli("artifacts", "verify", "1.0", "--public-key", str(public)).code in (0, 1)
    assert cli("artifacts", "gc", "--keep-releases", "0").code == 2
