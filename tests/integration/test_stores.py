"""The ArtifactStore contract on both stores: file:// and a real S3 server (SeaweedFS)."""
from __future__ import annotations

import json
import threading

import pytest

import fleetbuild_plugins.s3 as s3_plugin
from fleetbuild.errors import ConfigError
from fleetbuild.plugin.manager import Plugins
from fleetbuild.store.api import NotFound, PreconditionFailed, StoreError


def test_roundtrip_listing_and_delete(store, tmp_path):
    etag = store.write_bytes("builds/k1.json", b'{"a": 1}')
    assert store.read_bytes("builds/k1.json") == (b'{"a": 1}', etag)
    big = tmp_path / "engine.plan"
    big.write_bytes(bytes(range(256)) * (12 * 4096 + 17))          # ~12 MiB: multipart on S3
    store.upload_file("blobs/sha256/" + "b" * 64, big)
    store.download_file("blobs/sha256/" + "b" * 64, tmp_path / "back.plan")
    assert (tmp_path / "back.plan").read_bytes() == big.read_bytes()
    assert sorted(store.list()) == ["blobs/sha256/" + "b" * 64, "builds/k1.json"]
    assert list(store.list("builds/")) == ["builds/k1.json"]
    assert store.exists("builds/k1.json") and not store.exists("builds/none.json")
    store.delete("builds/k1.json")
    with pytest.raises(NotFound):
        store.read_bytes("builds/k1.json")
    with pytest.raises(NotFound):
        store.download_file("builds/k1.json", tmp_path / "never.json")
    assert not (tmp_path / "never.json").exists() and not list(tmp_path.glob(".tmp-*"))


def test_conditional_writes(store):
    first = store.write_bytes("releases/p/1.0/index.json", b"1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.write_bytes("releases/p/1.0/index.json", b"2", if_none_match=True)
    second = store.write_bytes("releases/p/1.0/index.json", b"3", if_match=first)
    with pytest.raises(PreconditionFailed):
        store.write_bytes("releases/p/1.0/index.json", b"4", if_match=first)
    assert store.read_bytes("releases/p/1.0/index.json") == (b"3", second)


def test_sixteen_concurrent_publishers_lose_nothing(store):
    """Each adds its entry by read-modify-write with compare-and-swap; all 16 must survive."""
    def publish(name: str) -> None:
        while True:
            try:
                data, etag = store.read_bytes("releases/p/2.0/index.json")
            except NotFound:
                try:
                    store.write_bytes("releases/p/2.0/index.json", json.dumps([name]).encode(), if_none_match=True)
                    return
                except PreconditionFailed:
                    continue
            try:
                store.write_bytes("releases/p/2.0/index.json", json.dumps(json.loads(data) + [name]).encode(),
                                  if_match=etag)
                return
            except PreconditionFailed:
                continue
    threads = [threading.Thread(target=publish, args=(f"job{i}",)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(json.loads(store.read_bytes("releases/p/2.0/index.json")[0])) == sorted(f"job{i}" for i in range(16))


def test_s3_faults_are_one_line_store_errors(s3_server, s3_bucket, tmp_path):
    plugins = Plugins(entry_points=False, objects=[s3_plugin])
    good = dict(s3_server.env())
    wrong_key = {**good, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    with pytest.raises(StoreError, match=r"access denied \(SignatureDoesNotMatch\); check the credentials"):
        plugins.store_for(f"s3://{s3_bucket}", {"path_style": True}, tmp_path, "f.toml", wrong_key).write_bytes("a", b"x")
    missing = plugins.store_for("s3://no-such-bucket", {"path_style": True}, tmp_path, "f.toml", good)
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        missing.read_bytes("a")        # (SeaweedFS creates buckets on PUT, AWS does not: test a read)
    with pytest.raises(StoreError, match="bucket 'no-such-bucket' does not exist"):
        list(missing.list())
    closed = {**good, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}
    with pytest.raises(StoreError, match=r"cannot reach the endpoint http://127.0.0.1:9"):
        plugins.store_for(f"s3://{s3_bucket}", {"path_style": True, "max_attempts": 1}, tmp_path, "f.toml",
                          closed).write_bytes("a", b"x")
    with pytest.raises(ConfigError, match=r"f.toml: store.chunk_size: unknown key"):
        plugins.store_for(f"s3://{s3_bucket}", {"chunk_size": 5}, tmp_path, "f.toml", good)
    with pytest.raises(ConfigError, match=r"f.toml: store.max_attempts: expected an integer from 1 to 20"):
        plugins.store_for(f"s3://{s3_bucket}", {"max_attempts": 0}, tmp_path, "f.toml", good)


def test_quickstart_builds_into_s3(s3_server, s3_bucket, project, cli):
    from conftest import ROOT, import_or_require

    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    import shutil

    shutil.copy(ROOT / "examples" / "quickstart" / "inventory.ini", project.root / "inventory.ini")
    text = (ROOT / "examples" / "quickstart" / "fleet.toml").read_text().replace(
        'url = "file://./artifacts"', f'url = "s3://{s3_bucket}/quickstart"\npath_style = true')
    project.write(text)
    assert cli("keys", "generate", "keys").code == 0
    result = cli("-p", "fleetbuild_plugins.s3", "matrix", "build", "--only", "two_input", "--json", "--publish",
                 "--channel", "stable", extra_env={**s3_server.env(), "FLEETBUILD_SIGNING_KEY": "keys/fleetbuild.key"})
    assert result.code == 0, result.err
    assert "published quickstart 0.1.0 (sequence 1, 2 jobs, signed); channel stable -> 0.1.0" in result.err
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    manifests = [k for k in keys if k.startswith("quickstart/builds/") and k.endswith(".json")]
    assert "quickstart/releases/quickstart/0.1.0/index.json" in keys
    assert "quickstart/releases/quickstart/channels/stable.json" in keys
    blobs = [k for k in keys if k.startswith("quickstart/blobs/sha256/")]
    index = json.loads(s3_server.client().get_object(
        Bucket=s3_bucket, Key="quickstart/releases/quickstart/0.1.0/index.json")["Body"].read())
    goldens = [entry["golden"] for entry in index["entries"].values()]
    assert len(goldens) == 2 and goldens[0]["inputs"] == goldens[1]["inputs"]      # per model, stored once
    assert sorted(goldens[0]["inputs"]) == ["a", "b"] and goldens[0]["cosine"] == 0.99     # fp16's floor
    samples = {a["sha256"] for g in goldens for side in ("inputs", "outputs") for a in g[side].values()}
    engines = {entry["engine"]["sha256"] for entry in index["entries"].values()}
    assert {f"quickstart/blobs/sha256/{d}" for d in samples | engines} == set(blobs)
    assert len(manifests) == 2 and len(engines) == 2                # one engine per compute capability


def test_aws_cli_lists_and_downloads_what_fleetbuild_uploaded(s3_server, s3_bucket, tmp_path):
    """Interop: the AWS CLI (awscli, in the machine image) reads the S3 store's objects as they are."""
    import hashlib
    import os
    import shutil
    import subprocess

    from conftest import require

    require(shutil.which("aws") is not None, "the AWS CLI", "pip install awscli")
    store = Plugins(entry_points=False, objects=[s3_plugin]).store_for(
        f"s3://{s3_bucket}/fleet", {"path_style": True, "multipart_chunksize": "5MiB"}, tmp_path, "f", s3_server.env())
    engine = tmp_path / "engine.plan"
    engine.write_bytes(os.urandom(7 << 20))                               # multipart upload
    digest = hashlib.sha256(engine.read_bytes()).hexdigest()
    store.upload_file(f"blobs/sha256/{digest}", engine)
    env = {**os.environ, **s3_server.env(), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}
    listing = subprocess.run(["aws", "s3", "ls", f"s3://{s3_bucket}/fleet/", "--recursive", "--endpoint-url",
                              s3_server.endpoint], capture_output=True, text=True, env=env)
    assert listing.returncode == 0, listing.stderr
    assert f"fleet/blobs/sha256/{digest}" in listing.stdout and str(7 << 20) in listing.stdout
    down = tmp_path / "via-aws.plan"
    copy = subprocess.run(["aws", "s3", "cp", f"s3://{s3_bucket}/fleet/blobs/sha256/{digest}", str(down),
                           "--endpoint-url", s3_server.endpoint], capture_output=True, text=True, env=env)
    assert copy.returncode == 0, copy.stderr
    assert hashlib.sha256(down.read_bytes()).hexdigest() == digest


def test_local_store_disk_full_is_one_line_and_leaves_nothing(tmp_path):
    import shutil
    import subprocess
    import sys

    from conftest import ROOT, require

    require(shutil.which("unshare") is not None, "unshare (util-linux)", "apt-get install util-linux")
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    code = ("import sys, os; from pathlib import Path; from fleetbuild.store.local import LocalStore\n"
            "from fleetbuild.store.api import StoreError\n"
            "store = LocalStore(sys.argv[1], Path('/'))\n"
            "big = Path(sys.argv[2]); big.write_bytes(os.urandom(3 << 20))\n"
            "try:\n    store.upload_file('blobs/sha256/' + 'c' * 64, big)\nexcept StoreError as err:\n"
            "    print('ERR', err)\n"
            "print(sorted(p.name for p in Path(sys.argv[1]).rglob('*')))\n")
    script = (f"mount -t tmpfs -o size=1m tmpfs {tiny} || exit 99; "
              f"{sys.executable} -c \"$CODE\" {tiny}/store {tmp_path}/big.plan")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          env={"CODE": code, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    require(proc.returncode != 99, "mounting a tmpfs in a user namespace", proc.stderr)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"ERR {tiny}/store: blobs/sha256/{'c' * 64}: no space left on device ({tiny}/store)"
    assert lines[1] == "['blobs', 'sha256']"                               # no partial or temp file left


def test_server_stopped_mid_upload_fails_cleanly_and_publishes_nothing(s3_server, s3_bucket, tmp_path):
    import hashlib
    import os
    import threading
    import time

    from fleetbuild.store.publish import publish

    store = Plugins(entry_points=False, objects=[s3_plugin]).store_for(
        f"s3://{s3_bucket}", {"path_style": True, "multipart_chunksize": "5MiB", "max_concurrency": 2,
                              "max_attempts": 2}, tmp_path, "f", s3_server.env())
    engine = tmp_path / "big.plan"
    engine.write_bytes(os.urandom(64 << 20))
    digest = hashlib.sha256(engine.read_bytes()).hexdigest()
    outcome = {}

    def upload():
        try:
            store.upload_file(f"blobs/sha256/{digest}", engine)
            outcome["ok"] = True
        except StoreError as err:
            outcome["error"] = str(err)
    thread = threading.Thread(target=upload)
    thread.start()
    time.sleep(0.3)
    s3_server.stop()
    thread.join(120)
    try:
        assert "error" in outcome, "the upload finished before the server stopped"
        assert "\n" not in outcome["error"] and outcome["error"].startswith(f"s3://{s3_bucket}")
    finally:
        s3_server.restart()
    assert not store.exists(f"blobs/sha256/{digest}")                    # no half object became visible
    store.write_bytes("builds/k.json", b"{}")
    entry = {"target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5",
             "tensorrt": {"flavor": "tensorrt", "version": "10.3"}, "build_key": "k", "manifest": "builds/k.json",
             "engine": {"file": "engine.plan", "sha256": digest, "size": 64 << 20}}
    with pytest.raises(StoreError, match="is missing: m/t4/fp16 cannot be published"):
        publish(store, "p", "1.0", {"m/t4/fp16": entry})
    assert not store.exists("releases/p/1.0/index.json")
