"""The store never reuses or signs an engine it has not checked: a corrupted blob is found on the
next build (size always; full hash on a local store, or with --verify), quarantined and rebuilt;
publish hashes every engine it signs and refuses, naming the job, when one is not what was built."""
from __future__ import annotations

import hashlib
import json

import pytest
from conftest import import_or_require

CONFIG = """
[project]
name = "integ"
version = "1.0.0"

[defaults]
precisions = ["fp16"]
backend = "tensorrt-rtx"
workspace = "256MiB"

[models.conv]
onnx = "models/conv_bn_relu.onnx"

[matrix]
targets = ["a100"]

[inventory]
path = "inventory.ini"

[store]
url = "{url}"
{options}
"""


@pytest.fixture
def built(project, cli, tmp_path, request):
    """conv/a100/fp16 built with TensorRT-RTX into a file:// or S3 store; (store, blob key, extra env)."""
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    (tmp_path / "inventory.ini").write_text("[a100]\n")
    extra = {}
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        project.write(CONFIG.format(url=f"s3://{bucket}/fleet",
                                    options='path_style = true\n\n[plugins]\nload = ["fleetbuild_plugins.s3"]'))
        extra = server.env()
    else:
        project.write(CONFIG.format(url="file://./artifacts", options=""))
    result = cli("matrix", "build", "--local", extra_env=extra)
    assert result.code == 0, result.err
    import fleetbuild_plugins.s3 as s3_plugin
    from fleetbuild.plugin.manager import Plugins

    plugins = Plugins(entry_points=False, objects=[s3_plugin])
    if request.param == "s3":
        store = plugins.store_for(f"s3://{bucket}/fleet", {"path_style": True}, tmp_path, "fleet.toml", extra)
    else:
        store = plugins.store_for("file://./artifacts", {}, tmp_path, "fleet.toml", {})
    blob = next(k for k in store.list("blobs/sha256/"))
    return store, blob, extra


def flip_byte(store, key: str, tmp_path) -> bytes:
    data = bytearray(store.read_bytes(key)[0])
    data[len(data) // 2] ^= 0xFF
    store.write_bytes(key, bytes(data))
    return bytes(data)


@pytest.mark.parametrize("built", ["file"], indirect=True)
def test_corrupted_local_blob_is_quarantined_and_rebuilt(built, cli, tmp_path):
    store, blob, _ = built
    good = store.read_bytes(blob)[0]
    flip_byte(store, blob, tmp_path)
    result = cli("matrix", "build", "--local", "--json", "r.json")
    assert result.code == 0, result.err
    assert "the stored engine of conv/a100/fp16 is corrupted (its bytes hash to " in result.err
    assert "moved to quarantine/sha256/" in result.err and "building it again" in result.err
    status = json.loads((tmp_path / "r.json").read_text())["results"][0]["status"]
    assert status == "built"
    assert hashlib.sha256(store.read_bytes(blob)[0]).hexdigest() == blob.rsplit("/", 1)[1]
    assert len(good) == len(store.read_bytes(blob)[0])
    assert len(list(store.list("quarantine/sha256/"))) == 1
    assert cli("matrix", "build", "--local").err.count("corrupted") == 0        # and now it is a clean hit


@pytest.mark.parametrize("built", ["file", "s3"], indirect=True)
def test_truncated_blob_is_found_by_size(built, cli, tmp_path):
    store, blob, extra = built
    store.write_bytes(blob, store.read_bytes(blob)[0][:1000])
    result = cli("matrix", "build", "--local", extra_env=extra)
    assert result.code == 0, result.err
    assert "is corrupted (1000 bytes, the manifest says" in result.err
    assert hashlib.sha256(store.read_bytes(blob)[0]).hexdigest() == blob.rsplit("/", 1)[1]


@pytest.mark.parametrize("built", ["s3"], indirect=True)
def test_publish_hashes_what_it_signs(built, cli, tmp_path):
    store, blob, extra = built
    flip_byte(store, blob, tmp_path)                  # same size: only a full hash can tell
    cli("keys", "generate", str(tmp_path))
    env = {**extra, "FLEETBUILD_SIGNING_KEY": str(tmp_path / "fleetbuild.key")}
    result = cli("publish", "--local", "--version", "1.0.1", extra_env=env)
    assert result.code != 0
    assert "not published: the stored engine of conv/a100/fp16 is corrupted: its bytes hash to" in result.err
    assert "fleetbuild matrix build --only conv/a100/fp16" in result.err and "Traceback" not in result.err
    assert not [k for k in store.list("releases/")]                     # nothing signed, nothing written
    verified = cli("matrix", "build", "--local", "--verify", extra_env=extra)
    assert verified.code == 0 and "is corrupted (its bytes hash to" in verified.err, verified.err
    assert cli("publish", "--local", "--version", "1.0.1", extra_env=env).code == 0


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("built", ["file"], indirect=True)
@pytest.mark.parametrize("argv,message", [
    (["publish", "--local", "--version", "../../evil"], "argument --version: '../../evil' is not a valid release version"),
    (["publish", "--local", "--version", "1.0 béta"], "argument --version: '1.0 béta' is not a valid release version"),
    (["publish", "--local", "--channel", "../../x"], "argument --channel: '../../x' is not a valid channel name"),
    (["publish", "--local", "--channel", "a/b"], "argument --channel: 'a/b' is not a valid channel name"),
    (["matrix", "build", "--local", "--publish", "--version", "1..2"], "'1..2' is not a valid release version"),
    (["artifacts", "show", "../x"], "argument VERSION: '../x' is not a valid release version"),
])
def test_bad_names_are_one_line_errors_and_write_nothing(built, cli, tmp_path, argv, message):
    before = snapshot(tmp_path / "artifacts")
    result = cli(*argv)
    assert result.code == 2
    assert message in result.err and "Traceback" not in result.err
    assert snapshot(tmp_path / "artifacts") == before


@pytest.mark.parametrize("built", ["file"], indirect=True)
def test_missing_release_is_said_in_the_users_words(built, cli, tmp_path):
    assert cli("publish", "--local", "--version", "0.1.0").code == 0
    result = cli("artifacts", "show", "9.9.9")
    assert result.code == 2
    assert result.err.strip() == ("fleetbuild: error: release integ 9.9.9 is not in the store file://./artifacts; "
                                  "published: 0.1.0")
    import sys

    from conftest import ROOT
    sys.path.insert(0, str(ROOT))
    from fleetbuild.remote.pull import PullError, pull
    with pytest.raises(PullError, match=r"^release integ 9.9.9 is not in the store .*; published: 0.1.0$"):
        pull(str(tmp_path / "artifacts"), "integ", "9.9.9", "conv", "", str(tmp_path / "device"))
    with pytest.raises(PullError, match=r"^the store .*/nowhere does not exist \(check --store\)$"):
        pull(str(tmp_path / "nowhere"), "integ", "0.1.0", "conv", "", str(tmp_path / "device"))
    with pytest.raises(PullError, match=r"^release integ 0.1.0 refused: it is unsigned"):
        pull(str(tmp_path / "artifacts"), "integ", "0.1.0", "conv", "", str(tmp_path / "device"))


@pytest.mark.parametrize("built", ["file", "s3"], indirect=True)
def test_controller_pull_for_a_device_described_by_its_facts(built, cli, tmp_path):
    store, blob, extra = built
    cli("keys", "generate", str(tmp_path))
    env = {**extra, "FLEETBUILD_SIGNING_KEY": str(tmp_path / "fleetbuild.key")}
    assert cli("publish", "--local", "--version", "2.0", "--channel", "stable", extra_env=env).code == 0
    a10 = tmp_path / "a10.json"
    a10.write_text(json.dumps({"gpus": [{"compute_capability": "8.6"}],
                               "tensorrt": [{"flavor": "tensorrt-rtx", "version": "1.7.1.116"}]}))
    dry = cli("pull", "--model", "conv", "--channel", "stable", "--out", "device", "--facts", str(a10), "--dry-run",
              extra_env=env)
    assert dry.code == 1 and "no engine of conv in integ 2.0 fits this device (CC 8.6, tensorrt-rtx 1.7.1.116)" \
        in dry.err and "conv/a100/fp16: built for tensorrt-rtx 1.7 on CC 8.0" in dry.err, dry.err
    a100 = tmp_path / "a100.json"
    a100.write_text(json.dumps({"gpus": [{"compute_capability": "8.0"}],
                                "tensorrt": [{"flavor": "tensorrt-rtx", "version": "1.7.1.116"}]}))
    result = cli("pull", "--model", "conv", "--version", "2.0", "--out", "device", "--facts", str(a100),
                 extra_env=env)
    assert result.code == 0, result.err
    assert result.out.strip() == "installed conv/a100/fp16 (release 2.0) in device"
    assert hashlib.sha256((tmp_path / "device" / "conv.plan").read_bytes()).hexdigest() == blob.rsplit("/", 1)[1]
