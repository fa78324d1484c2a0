"""Releases: concurrent publishers, conflicts, signatures checked by our device code (Python 3.6)
and by Debian's minisign, on file:// and on a real S3 server."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time

import pytest
from conftest import pyenv_python, require

from fleetbuild.store import signing
from fleetbuild.plugin.manager import Plugins
from fleetbuild.store.publish import PublishConflict, publish
from fleetbuild.remote.release import ReleaseError, check_index, signature_key
from fleetbuild.store.api import StoreError


@pytest.fixture
def signer(tmp_path):
    return signing.generate(tmp_path / "keys", {})


def entry(store, index: int, content: bytes = b"") -> dict:
    engine = b"vtrt" + index.to_bytes(4, "little") + content
    digest = hashlib.sha256(engine).hexdigest()
    key = hashlib.sha256(b"key" + engine).hexdigest()
    store.write_bytes(f"blobs/sha256/{digest}", engine)
    store.write_bytes(f"builds/{key}.json", json.dumps({"build_key": key}).encode())
    return {"target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5",
            "tensorrt": {"flavor": "tensorrt-rtx", "version": "1.7.1.116"}, "build_key": key,
            "manifest": f"builds/{key}.json", "engine": {"file": "engine.plan", "sha256": digest, "size": len(engine)}}


def read_release(store, version="1.0"):
    data, _ = store.read_bytes(f"releases/p/{version}/index.json")
    return data, store.read_bytes(signature_key(data, f"releases/p/{version}"))[0].decode()


def test_sixteen_concurrent_publishers_to_one_version(store, signer):
    _, public, key = signer
    entries = [entry(store, i) for i in range(16)]
    errors = []

    def run(i):
        try:
            publish(store, "p", "1.0", {f"m{i}/t4/fp16": entries[i]}, key)
        except Exception as err:      # surfaced below
            errors.append(err)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    data, sig = read_release(store)
    index = check_index(data, sig, public.read_text(), "p", "1.0")
    assert sorted(index["entries"]) == sorted(f"m{i}/t4/fp16" for i in range(16))
    assert index["sequence"] == 16


def test_conflicts_force_and_idempotence(store, signer):
    _, public, key = signer
    first, other = entry(store, 1), entry(store, 1, b"rebuilt")
    publish(store, "p", "1.0", {"m/t4/fp16": first}, key)
    again = publish(store, "p", "1.0", {"m/t4/fp16": first}, key)
    assert again["sequence"] == 1                                    # nothing new, nothing written
    with pytest.raises(PublishConflict, match="release p 1.0 already has m/t4/fp16 with other content; "
                                              "publish a new version, or use --force"):
        publish(store, "p", "1.0", {"m/t4/fp16": other}, key)
    forced = publish(store, "p", "1.0", {"m/t4/fp16": other}, key, force=True)
    assert forced["sequence"] == 2 and forced["entries"]["m/t4/fp16"] == other


def test_an_index_never_names_a_missing_blob(store, signer):
    broken = entry(store, 7)
    store.delete(f"blobs/sha256/{broken['engine']['sha256']}")
    with pytest.raises(StoreError, match="is missing: m/t4/fp16 cannot be published"):
        publish(store, "p", "1.0", {"m/t4/fp16": broken}, signer[2])
    assert not store.exists("releases/p/1.0/index.json")


def test_device_checks_refuse_tampered_foreign_expired_and_replayed(tmp_path, signer):
    _, public, key = signer
    store = Plugins(entry_points=False).store_for("file://s", {}, tmp_path, "f", {})
    publish(store, "p", "1.0", {"a": entry(store, 1)}, key)
    first, first_sig = read_release(store)
    publish(store, "p", "1.0", {"b": entry(store, 2)}, key)
    data, sig = read_release(store)
    pub = public.read_text()
    assert check_index(data, sig, pub, "p", "1.0", min_sequence=2)["sequence"] == 2
    with pytest.raises(ReleaseError, match="signature does not match the content"):
        check_index(data.replace(b'"sequence": 2', b'"sequence": 9'), sig, pub, "p", "1.0")
    with pytest.raises(ReleaseError, match="index is for p 1.0, not other 1.0"):
        check_index(data, sig, pub, "other", "1.0")
    with pytest.raises(ReleaseError, match="index expired"):
        check_index(data, sig, pub, "p", "1.0", now=time.time() + 91 * 86400)
    with pytest.raises(ReleaseError, match="index sequence 1 is older than 2 already accepted"):
        check_index(first, first_sig, pub, "p", "1.0", min_sequence=2)
    _, other_public, _ = signing.generate(tmp_path / "other", {})
    with pytest.raises(ReleaseError, match="signed by another key"):
        check_index(data, sig, other_public.read_text(), "p", "1.0")


def test_signatures_verify_with_minisign_and_on_python36(tmp_path, signer, zipapp):
    _, public, key = signer
    store = Plugins(entry_points=False).store_for("file://s", {}, tmp_path, "f", {})
    publish(store, "p", "1.0", {"a": entry(store, 1)}, key)
    data, sig = read_release(store)
    (tmp_path / "index.json").write_bytes(data)
    (tmp_path / "index.json.minisig").write_text(sig)
    require(shutil.which("minisign") is not None, "minisign", "make test-deps (apt-get install minisign)")
    proc = subprocess.run(["minisign", "-Vm", str(tmp_path / "index.json"), "-p", str(public)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Signature and comment signature verified" in proc.stdout
    py36 = pyenv_python("3.6")
    require(py36 is not None, "Python 3.6 (pyenv)", "the machine image's pyenv")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from fleetbuild_remote.release import check_index;"
            "i = check_index(open(sys.argv[2], 'rb').read(), open(sys.argv[3]).read(), open(sys.argv[4]).read(), 'p', '1.0');"
            "print(i['sequence'], sorted(i['entries']))")
    proc = subprocess.run([py36, "-c", code, str(zipapp), str(tmp_path / "index.json"), str(tmp_path / "index.json.minisig"),
                           str(public)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1 ['a']"


def test_cli_publish_refuses_missing_jobs_and_keys_refuse_overwrite(project, cli, minimal):
    project.write(minimal + '[inventory]\npath = "inventory.ini"\n')
    (project.root / "inventory.ini").write_text("[t4]\nlocalhost ansible_connection=local\n")
    assert cli("keys", "generate", "k").code == 0
    result = cli("keys", "generate", "k")
    assert result.code == 2 and result.err == "fleetbuild: error: k/fleetbuild.key already exists (use --force to replace it)\n"
    result = cli("publish", "--version", "1.0", "--facts-max-age", "0")
    assert result.code == 1
    assert "not in the store: conv/t4/fp32 (build it first, or --skip it)" in result.err
    assert not (project.root / "artifacts" / "releases").exists()
