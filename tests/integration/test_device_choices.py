"""Device pull, the choices and the install (zipapp on Python 3.6 where the CLI is what runs):
version-compatible and hardware-compatible engines, the precision preference, --facts, --dry-run,
--channel, unchanged, the previous engine kept and rolled back, and a download resumed with an
HTTP Range request that transfers only the rest."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import threading

import pytest
from conftest import pyenv_python, require

from fleetbuild.store import signing
from fleetbuild.plugin.manager import Plugins
from fleetbuild.store.publish import publish, set_channel


def release(tmp_path, key, jobs, version="1.0", channel=None, size=64):
    """jobs: (job id, cc, tensorrt version, compat dict); engines of `size` bytes."""
    store = Plugins(entry_points=False).store_for(f"file://{tmp_path}/store", {}, tmp_path, "f", {})
    entries = {}
    for job_id, cc, trt, compat in jobs:
        engine = (b"ftrt" + job_id.encode() + version.encode()).ljust(size, b"\0")
        digest = hashlib.sha256(engine).hexdigest()
        store.write_bytes(f"blobs/sha256/{digest}", engine)
        store.write_bytes(f"builds/{digest}.json", json.dumps({"build_key": digest, "job_id": job_id,
                                                               "engine": {"sha256": digest}}).encode())
        entries[job_id] = {"target": job_id.split("/")[1], "variant": "", "precision": job_id.split("/")[2],
                           "compute_capability": cc, "tensorrt": {"flavor": "tensorrt", "version": trt},
                           "build_key": digest, "manifest": f"builds/{digest}.json", "compat": compat,
                           "engine": {"file": "engine.plan", "sha256": digest, "size": len(engine)}}
    index = publish(store, "fleet", version, entries, key)
    if channel:
        set_channel(store, "fleet", channel, index, key)
    return store, entries


def facts(cc="8.6", trt="10.5.0.1", jetson=False):
    data = {"gpus": [{"name": "GPU", "compute_capability": cc}], "tensorrt": [{"flavor": "tensorrt", "version": trt}]}
    if jetson:
        data["jetson"] = {"board": "orin"}
    return data


def device(zipapp, tmp_path, public, *args, device_facts=None):
    py36 = pyenv_python("3.6")
    require(py36 is not None, "Python 3.6 (pyenv)", "the machine image's pyenv")
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(device_facts or facts()))
    return subprocess.run([py36, str(zipapp), *args, "--public-key", str(public), "--facts", str(path)]
                          if args[0] == "pull" else [py36, str(zipapp), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C"})


def pull_args(tmp_path, *extra):
    return ("pull", "--store", str(tmp_path / "store"), "--project", "fleet", "--model", "det", "--out",
            str(tmp_path / "engines"), *extra)


@pytest.fixture
def keys(tmp_path):
    return signing.generate(tmp_path / "keys", {})


def test_compatible_engines_and_preference(zipapp, tmp_path, keys):
    _, public, key = keys
    release(tmp_path, key, [
        ("det/a100/fp16", "8.0", "10.3.0.26", {"hardware_compatibility_level": "ampere_plus"}),
        ("det/a100/int8", "8.0", "10.3.0.26", {"hardware_compatibility_level": "ampere_plus",
                                               "version_compatible": True}),
        ("det/a100/fp32", "8.0", "10.5.0.1", {})])
    # A CC 8.6 GPU with TensorRT 10.5: fp16 is hardware- but not version-compatible; int8 is both.
    proc = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--version", "1.0", "--dry-run"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "would install det/a100/int8 (release 1.0, 64 bytes)"
    assert any(line.startswith("  det/a100/fp16: built for TensorRT 10.3 on CC 8.0; this device has TensorRT "
                               "10.5.0.1 on CC 8.6 - version mismatch") for line in lines)
    assert any(line.startswith("  det/a100/fp32: built for TensorRT 10.5 on CC 8.0; this device has TensorRT 10.5.0.1 "
                               "on CC 8.6 - compute capability mismatch") for line in lines)
    assert not (tmp_path / "engines").exists()                                # dry run: nothing downloaded
    # An older runtime never loads a newer engine, version-compatible or not.
    older = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--version", "1.0"),
                   device_facts=facts(trt="10.1.0.5"))
    assert older.returncode == 1 and "no engine of det in fleet 1.0 fits this device (CC 8.6, TensorRT 10.1.0.5)" \
        in older.stderr
    # ampere_plus is never taken on a Jetson.
    jetson = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--version", "1.0"),
                    device_facts=facts(cc="8.7", trt="10.3.0.26", jetson=True))
    assert jetson.returncode == 1 and "compute capability mismatch: publish a build for CC 8.7" in jetson.stderr


def test_preference_channel_unchanged_previous_and_rollback(zipapp, tmp_path, keys):
    _, public, key = keys
    jobs = [("det/a10/fp16", "8.6", "10.5.0.1", {}), ("det/a10/int8", "8.6", "10.5.0.1", {})]
    release(tmp_path, key, jobs, version="1.0", channel="stable")
    proc = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--channel", "stable"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"installed det/a10/fp16 as {tmp_path / 'engines'}/det.plan\n"      # fp16 before int8
    again = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--channel", "stable"))
    assert again.stdout == f"unchanged: det/a10/fp16 is already installed in {tmp_path / 'engines'}\n"
    release(tmp_path, key, jobs, version="1.1", channel="stable")
    newer = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--channel", "stable", "--precision", "int8,fp16"))
    assert newer.returncode == 0 and newer.stdout.startswith("installed det/a10/int8"), newer.stderr
    listed = json.loads(device(zipapp, tmp_path, public, "installed", "--out", str(tmp_path / "engines")).stdout)
    assert [(r["model"], r["job_id"], r["version"], r["channel"], r["previous"]) for r in listed] == [
        ("det", "det/a10/int8", "1.1", "stable", "1.0")]
    assert (tmp_path / "engines" / "det.plan").read_bytes().startswith(b"ftrtdet/a10/int81.1")
    back = device(zipapp, tmp_path, public, "rollback", "--model", "det", "--out", str(tmp_path / "engines"))
    assert back.returncode == 0 and back.stdout == "rolled back det to det/a10/fp16 (release fleet 1.0)\n"
    assert (tmp_path / "engines" / "det.plan").read_bytes().startswith(b"ftrtdet/a10/fp161.0")
    assert (tmp_path / "engines" / "det.previous.plan").read_bytes().startswith(b"ftrtdet/a10/int81.1")


def test_unsigned_channel_and_unknown_model(zipapp, tmp_path, keys):
    _, public, key = keys
    store, _ = release(tmp_path, key, [("det/a10/fp16", "8.6", "10.5.0.1", {})], channel="stable")
    for sig in store.list("releases/fleet/channels/signatures/"):
        store.delete(sig)
    proc = device(zipapp, tmp_path, public, *pull_args(tmp_path, "--channel", "stable"))
    assert proc.returncode == 1 and "channel stable of fleet is unsigned" in proc.stderr
    args = list(pull_args(tmp_path, "--version", "1.0"))
    args[args.index("det")] = "seg"
    other = device(zipapp, tmp_path, public, *args)
    assert other.returncode == 1 and "release fleet 1.0 has no engine of model seg (it has: det)" in other.stderr


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory with single-range GET support (Python's own handler has none), and
    counts the bytes it sent."""

    sent = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        header = self.headers.get("Range")
        if header and header.startswith("bytes="):
            start = int(header[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).sent += len(body)


def test_interrupted_download_resumes_with_range(zipapp, tmp_path, keys):
    _, public, key = keys
    _, entries = release(tmp_path, key, [("det/a10/fp16", "8.6", "10.5.0.1", {})], size=3 << 20)
    engine = entries["det/a10/fp16"]["engine"]
    blob = (tmp_path / "store" / "blobs" / "sha256" / engine["sha256"]).read_bytes()
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / ".det.plan.download.part").write_bytes(blob[: 2 << 20])    # 2 MiB arrived before
    handler = type("Handler", (RangeHandler,), {"sent": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(
        tmp_path / "store"), **k))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        args = list(pull_args(tmp_path, "--version", "1.0"))
        args[args.index(str(tmp_path / "store"))] = f"http://127.0.0.1:{server.server_address[1]}"
        handler.sent = 0
        proc = device(zipapp, tmp_path, public, *args)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "engines" / "det.plan").read_bytes() == blob
    engine_bytes_sent = handler.sent - sum(len(p.read_bytes()) for p in (tmp_path / "store").rglob("*.json")) \
        - sum(len(p.read_bytes()) for p in (tmp_path / "store").rglob("*.minisig"))
    assert engine_bytes_sent <= (1 << 20) + 4096                                  # only the missing MiB
    assert not (tmp_path / "engines" / ".det.plan.download.part").exists()
