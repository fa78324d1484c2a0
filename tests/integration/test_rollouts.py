"""Phased rollouts end to end on a file store: the controller's `fleetbuild rollout` commands sign
records; device agents (the real agent code: in-process for a fleet of 200, and the zipapp on Python
3.6 for one device) follow them, install, run the health gate against the FAKE TensorRT 10.3 runtime
(tests/fixtures/fake_tensorrt: full TensorRT cannot run here), roll back, and report."""
from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import FIXTURES, pyenv_python, require

from fleetbuild.plugin.manager import Plugins
from fleetbuild.remote.agent import AgentOptions, run_cycle
from fleetbuild.remote.health import HealthGate
from fleetbuild.remote.reports import ReportSink
from fleetbuild.remote.rollout import cohort
from fleetbuild.store import signing
from fleetbuild.store.publish import publish, set_channel

sys.path.insert(0, str(FIXTURES))
from hosts import make_host  # noqa: E402

FAKE_TRT10 = FIXTURES / "fake_tensorrt" / "trt10"
DEVICES = 200


def fake_plan(version=(10, 3, 0, 26), tag=b""):
    """A plan the FAKE TensorRT runtime of `version` loads (header layout of tests/fixtures/fake_tensorrt)."""
    return b"ftrt" + struct.pack("<I", 0) + b"\0" * 16 + bytes(bytearray(version)) + b"\0" * 4 + b"FAKEPLAN" + tag


@pytest.fixture
def fleet(tmp_path, cli, project):
    """A project whose store holds releases 1.0, 2.0 (good engines) and 3.0 (an engine for another
    TensorRT, whose index claims 10.3.0.26: it installs and does not load); channel stable -> 1.0."""
    secret, public, key = signing.generate(tmp_path / "keys", {})
    store = Plugins(entry_points=False).store_for(f"file://{tmp_path}/store", {}, tmp_path, "f", {})
    for version, plan in (("1.0", fake_plan(tag=b"v1")), ("2.0", fake_plan(tag=b"v2")),
                          ("3.0", fake_plan((8, 6, 1, 6), b"v3"))):
        digest = hashlib.sha256(plan).hexdigest()
        store.write_bytes(f"blobs/sha256/{digest}", plan)
        store.write_bytes(f"builds/{digest}.json", json.dumps({
            "build_key": digest, "job_id": "det/t4/fp16", "tensorrt": {"flavor": "tensorrt"},
            "engine": {"file": "engine.plan", "sha256": digest, "size": len(plan)}}).encode())
        index = publish(store, "fleet", version, {"det/t4/fp16": {
            "target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5",
            "tensorrt": {"flavor": "tensorrt", "version": "10.3.0.26"}, "build_key": digest,
            "manifest": f"builds/{digest}.json", "engine": {"file": "engine.plan", "sha256": digest,
                                                            "size": len(plan)}}}, key)
        if version == "1.0":
            set_channel(store, "fleet", "stable", index, key)
    project.write(f'[project]\nname = "fleet"\n[models.det]\nonnx = "models/conv_bn_relu.onnx"\n'
                  f'[matrix]\ntargets = ["t4"]\n[store]\nurl = "file://{tmp_path}/store"\n[signing]\nkey = "{secret}"\n')
    root, bin_dir = make_host("t4", tmp_path / "device")
    probe = subprocess.run([sys.executable, "-m", "fleetbuild.remote", "probe"], capture_output=True, text=True,
                           env={"FLEETBUILD_PROBE_ROOT": str(root), "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert probe.returncode == 0, probe.stderr
    return {"store": tmp_path / "store", "public": public.read_text(), "public_path": public, "root": root,
            "bin": bin_dir, "facts": json.loads(probe.stdout), "tmp": tmp_path, "key": key}


@pytest.fixture
def fake_runtime(monkeypatch):
    """The FAKE TensorRT 10.3 importable as `tensorrt` in this process, for the health gate."""
    monkeypatch.syspath_prepend(str(FAKE_TRT10))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    yield
    sys.modules.pop("tensorrt", None)


def agents(fleet, count=DEVICES, **extra):
    """One cycle of each of `count` devices; {device id: version installed}."""
    found = {}
    for index in range(count):
        out = fleet["tmp"] / "devices" / f"d{index:04d}"
        opts = AgentOptions(str(fleet["store"]), "fleet", "stable", ["det"], fleet["public"], str(out),
                            device_id=f"d{index:04d}", facts=fleet["facts"], health=HealthGate(),
                            report=ReportSink(directory=str(fleet["store"])), **extra)
        run_cycle(opts)
        manifest = out / "det.manifest.json"
        found[f"d{index:04d}"] = json.loads(manifest.read_text())["release"]["version"] if manifest.exists() else None
    return found


def rollout(cli, *args, code=0):
    result = cli("rollout", *args)
    assert result.code == code, result.err
    return result


def test_a_rollout_from_one_percent_to_done_halted_and_reverted(cli, fleet, fake_runtime):
    assert set(agents(fleet).values()) == {"1.0"}                   # no rollout: the channel, as pull --channel
    rollout(cli, "start", "--channel", "stable", "--version", "2.0", "--phases", "1,10,50,100")
    record = json.loads(json.loads((fleet["store"] / "releases/fleet/rollouts/stable.json").read_text())["record"])
    first = agents(fleet)
    moved = {d for d, v in first.items() if v == "2.0"}
    assert moved == {d for d in first if cohort(record["salt"], d) < 1}  # exactly the cohort (often 1 or 2 of 200)
    rollout(cli, "advance", "--channel", "stable")
    tenth = agents(fleet)
    moved_10 = {d for d, v in tenth.items() if v == "2.0"}
    assert moved <= moved_10 == {d for d in tenth if cohort(record["salt"], d) < 10}
    assert 3 <= len(moved_10) <= 45                                   # 10 % of 200 (20), far outside 4 sd
    status = json.loads(rollout(cli, "status", "--channel", "stable", "--json").out)
    assert status["devices"] == DEVICES and status["phases"][1]["healthy"] == len(moved_10 - moved)
    assert status["phases"][0]["healthy"] == len(moved) and status["phases"][2]["targeted"] == 0

    rollout(cli, "advance", "--channel", "stable")
    second = agents(fleet)
    assert moved_10 <= {d for d, v in second.items() if v == "2.0"}   # widening never drops a device
    assert 60 <= sum(v == "2.0" for v in second.values()) <= 140

    rollout(cli, "halt", "--channel", "stable")
    rollout(cli, "advance", "--channel", "stable", code=2)            # a halted rollout does not widen
    assert agents(fleet) == second                                   # halted: nobody moves
    rollout(cli, "revert", "--channel", "stable")
    assert set(agents(fleet).values()) == {"1.0"}                    # reverted: every device back

    rollout(cli, "start", "--channel", "stable", "--version", "2.0", "--phases", "50,100")
    rollout(cli, "advance", "--channel", "stable")
    done = rollout(cli, "advance", "--channel", "stable")
    assert "done" in done.err
    assert set(agents(fleet).values()) == {"2.0"}
    channel = json.loads((fleet["store"] / "releases/fleet/channels/stable.json").read_text())
    assert channel["version"] == "2.0"                               # pull --channel devices agree


def test_an_engine_that_does_not_load_rolls_back_reports_and_halts_the_rollout(cli, fleet, fake_runtime):
    agents(fleet, 60)
    rollout(cli, "start", "--channel", "stable", "--version", "3.0", "--phases", "100", "--halt-at", "5%")
    after = agents(fleet, 60)
    assert set(after.values()) == {"1.0"}                            # every device restored its engine
    device = fleet["tmp"] / "devices" / "d0000"
    assert (device / "det.plan").read_bytes().endswith(b"v1")
    status = json.loads(rollout(cli, "status", "--channel", "stable", "--json").out)
    [phase] = status["phases"]
    assert phase["rolled_back"] == 60 and phase["healthy"] == 0
    assert "Version tag does not match" in phase["top_reasons"][0][0]
    again = agents(fleet, 1)                                         # known bad: not retried every cycle
    assert again["d0000"] == "1.0"
    state = json.loads((device / ".fleetbuild-agent.json").read_text())
    assert state["bad"]["det"][0] == "3.0"
    checked = rollout(cli, "check", "--channel", "stable", code=1)
    assert "halted" in checked.err


def test_a_tampered_or_replayed_record_and_a_forged_report_are_refused(cli, fleet, fake_runtime, tmp_path):
    rollout(cli, "start", "--channel", "stable", "--version", "2.0", "--phases", "100")
    record_file = fleet["store"] / "releases/fleet/rollouts/stable.json"
    first = record_file.read_bytes()
    agents(fleet, 2)
    rollout(cli, "halt", "--channel", "stable")
    agents(fleet, 2)
    record_file.write_bytes(first)                                   # replay the older, signed record
    out = fleet["tmp"] / "devices" / "d0000"
    opts = AgentOptions(str(fleet["store"]), "fleet", "stable", ["det"], fleet["public"], str(out), device_id="d0000",
                        facts=fleet["facts"])
    cycle = run_cycle(opts)
    assert cycle.status == "failed" and "older than" in cycle.lines[0]
    envelope = json.loads(first)
    envelope["record"] = envelope["record"].replace('"state": "running"', '"state": "reverted"')
    record_file.write_text(json.dumps(envelope))                     # tampered
    state = json.loads((out / ".fleetbuild-agent.json").read_text())
    state["next_try"] = 0
    (out / ".fleetbuild-agent.json").write_text(json.dumps(state))
    cycle = run_cycle(opts)
    assert cycle.status == "failed" and "signature" in cycle.lines[0]

    rollout(cli, "status", "--channel", "stable")                   # pins each device's key (first use)
    reports = fleet["store"] / "reports" / "fleet" / "stable"
    forged = json.loads((reports / "d0001.json").read_text())
    from fleetbuild.remote.reports import envelope as sign_report
    body = json.loads(forged["report"])
    (reports / "d0001.json").write_text(json.dumps(sign_report(body, b"\x07" * 32)))   # another key speaks for d0001
    status = json.loads(rollout(cli, "status", "--channel", "stable", "--json").out)
    assert status["forged_reports"] == ["d0001"]


class Refuse(BaseHTTPRequestHandler):
    def do_PUT(self):                     # an expired presigned URL: S3 answers 403
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(403)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_expired_upload_grant_is_said_and_the_install_stands(cli, fleet, fake_runtime):
    server = HTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rollout(cli, "start", "--channel", "stable", "--version", "2.0", "--phases", "100")
        out = fleet["tmp"] / "devices" / "granted"
        opts = AgentOptions(str(fleet["store"]), "fleet", "stable", ["det"], fleet["public"], str(out),
                            facts=fleet["facts"], health=HealthGate(),
                            report=ReportSink(url=f"http://127.0.0.1:{server.server_port}/reports/x.json?X-Amz-Signature=s"))
        cycle = run_cycle(opts)
    finally:
        server.shutdown()
    assert cycle.status == "changed"
    assert any("upload grant has expired" in line for line in cycle.lines)
    assert json.loads((out / "det.manifest.json").read_text())["release"]["version"] == "2.0"


@pytest.mark.parametrize("python", ["3.6", "3.10"])          # the Jetson Nano's Python, and a JetPack 6 one
def test_the_agent_follows_the_rollout_and_a_kill_leaves_the_previous_engine(cli, fleet, tmp_path, zipapp, python):
    py36 = pyenv_python(python)
    require(py36 is not None, f"Python {python} (pyenv)", "the machine image's pyenv")
    out = tmp_path / "device-agent"

    def agent(*extra, wait=True):
        command = [py36, str(zipapp), "agent", "--store", str(fleet["store"]), "--project", "fleet", "--channel",
                   "stable", "--model", "det", "--public-key", str(fleet["public_path"]), "--out", str(out),
                   "--health", "--report-to", str(fleet["store"]), *extra]
        env = {"FLEETBUILD_PROBE_ROOT": str(fleet["root"]), "PATH": f"{fleet['bin']}:/usr/bin:/bin",
               "PYTHONPATH": str(FAKE_TRT10)}
        if not wait:
            return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    first = agent()
    assert first.returncode == 0, first.stderr
    assert json.loads((out / "det.manifest.json").read_text())["release"]["version"] == "1.0"
    again = agent()
    assert again.returncode == 0 and again.stdout.startswith("unchanged"), again.stdout + again.stderr
    rollout(cli, "start", "--channel", "stable", "--version", "2.0", "--phases", "100")
    slow = agent("--jitter", "30", wait=False)                      # killed while it waits its jitter
    import time

    time.sleep(1.5)
    slow.kill()
    slow.wait()
    assert (out / "det.plan").read_bytes().endswith(b"v1")          # the previous engine, untouched
    moved = agent()
    assert moved.returncode == 0, moved.stderr
    assert "installed det/t4/fp16" in moved.stdout and "healthy" in moved.stdout
    report = json.loads(json.loads((fleet["store"] / "reports/fleet/stable" /
                                    f"{(out / '.fleetbuild-device-id').read_text().strip()}.json").read_text())["report"])
    assert report["changes"][0]["health"]["checks"][0]["detail"] == "loaded by TensorRT 10.3.0.26"


def test_pull_with_the_health_gate_keeps_the_previous_engine_and_installed_shows_the_verdict(fleet, tmp_path, zipapp):
    py36 = pyenv_python("3.6")
    require(py36 is not None, "Python 3.6 (pyenv)", "the machine image's pyenv")
    out = tmp_path / "pulled"

    def run(*args):
        return subprocess.run([py36, str(zipapp), *args], capture_output=True, text=True, timeout=120,
                              env={"FLEETBUILD_PROBE_ROOT": str(fleet["root"]), "PATH": f"{fleet['bin']}:/usr/bin:/bin",
                                   "PYTHONPATH": str(FAKE_TRT10)})

    def pull(version, *extra):
        return run("pull", "--store", str(fleet["store"]), "--project", "fleet", "--version", version, "--model",
                   "det", "--public-key", str(fleet["public_path"]), "--out", str(out), "--health", *extra)

    assert pull("1.0").returncode == 0
    bad = pull("3.0")
    assert bad.returncode == 1 and "failed its health gate (deserialize: TensorRT 10.3.0.26 cannot load it" in bad.stderr
    assert "Version tag does not match" in bad.stderr and "restored 1.0" in bad.stderr
    assert (out / "det.plan").read_bytes().endswith(b"v1")
    failing = pull("2.0", "--health-cmd", "sh -c 'echo probe timed out >&2; exit 3'")
    assert failing.returncode == 1 and "command: sh exited 3: probe timed out" in failing.stderr
    [row] = json.loads(run("installed", "--out", str(out)).stdout)
    assert row["version"] == "1.0" and row["health"]["version"] == "2.0" and row["health"]["ok"] is False
    assert pull("2.0").returncode == 0
    [row] = json.loads(run("installed", "--out", str(out)).stdout)
    assert row["version"] == "2.0" and row["health"]["ok"] is True and row["health"]["sha256"] == row["sha256"]


def test_a_report_grant_lets_a_device_write_its_own_report_to_s3_and_nothing_else(cli, project, s3_server, s3_bucket,
                                                                                    tmp_path):
    """The real S3 server: `rollout grant` makes a presigned PUT URL for one device's report key; the
    device's ReportSink writes through it; the same URL cannot write another key or read anything."""
    import urllib.error
    import urllib.request

    project.write(f'[project]\nname = "fleet"\n[models.det]\nonnx = "models/conv_bn_relu.onnx"\n[matrix]\n'
                  f'targets = ["t4"]\n[store]\nurl = "s3://{s3_bucket}/fleet"\npath_style = true\n')
    result = cli("-p", "fleetbuild_plugins.s3", "rollout", "grant", "--channel", "stable", "--device", "cam-7",
                 "--expires", "1h", "--out", str(tmp_path / "grant.url"), extra_env=s3_server.env())
    assert result.code == 0, result.err
    assert "device cam-7 may write reports/fleet/stable/cam-7.json until" in result.err
    assert (tmp_path / "grant.url").stat().st_mode & 0o777 == 0o600
    url = (tmp_path / "grant.url").read_text().strip()
    report = {"device": "cam-7", "project": "fleet", "channel": "stable", "changes": []}
    (tmp_path / "device").mkdir()
    assert ReportSink(url=url).send(report, str(tmp_path / "device")) is None
    body = s3_server.client().get_object(Bucket=s3_bucket, Key="fleet/reports/fleet/stable/cam-7.json")["Body"].read()
    assert json.loads(json.loads(body)["report"])["device"] == "cam-7"
    other = url.replace("cam-7.json", "cam-8.json")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(other, data=b"{}", method="PUT",
                                                      headers={"Content-Type": "application/json"}), timeout=10)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url, timeout=10)                      # a PUT grant does not read


def golden_release(fleet, version, scale, offset=0.0):
    """Release `version` of an engine the FAKE runtime runs as y = x * scale + offset, with golden
    samples of a model y = x (input x[1, 8] seeded random; the reference output is x itself)."""
    import io

    import numpy as np

    store = Plugins(entry_points=False).store_for(f"file://{fleet['store']}", {}, fleet["tmp"], "f", {})

    def blob(array):
        buffer = io.BytesIO()
        np.save(buffer, array)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        store.write_bytes(f"blobs/sha256/{digest}", data)
        return {"sha256": digest, "size": len(data)}

    x = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
    plan = fake_plan(tag=json.dumps({"io": {"inputs": {"x": "FLOAT"}, "outputs": {"y": "FLOAT"}},
                                     "compute": {"scale": scale, "offset": offset}}).encode())
    digest = hashlib.sha256(plan).hexdigest()
    store.write_bytes(f"blobs/sha256/{digest}", plan)
    engine = {"file": "engine.plan", "sha256": digest, "size": len(plan)}
    store.write_bytes(f"builds/{digest}.json", json.dumps({"build_key": digest, "engine": engine,
                                                           "tensorrt": {"flavor": "tensorrt"}}).encode())
    publish(store, "fleet", version, {"det/t4/fp16": {
        "target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5",
        "tensorrt": {"flavor": "tensorrt", "version": "10.3.0.26"}, "build_key": digest,
        "manifest": f"builds/{digest}.json", "engine": engine,
        "golden": {"inputs": {"x": blob(x)}, "outputs": {"y": blob(x)}, "cosine": 0.99}}}, fleet["key"])


def test_the_golden_samples_gate_the_engine_with_latency_and_power(fleet, tmp_path, zipapp, fake_cudart):
    py36 = pyenv_python("3.6")
    require(py36 is not None, "Python 3.6 (pyenv)", "the machine image's pyenv")
    golden_release(fleet, "5.0", scale=1.0)
    golden_release(fleet, "6.0", scale=-1.0)                           # computes garbage: the sign flipped
    rails = fleet["root"] / "sys/bus/i2c/drivers/ina3221x/1-0040/iio:device0"
    rails.mkdir(parents=True)
    for index, milliwatts in enumerate((4000, 2000, 1000)):           # a Jetson's three rails: 7 W in all
        (rails / f"in_power{index}_input").write_text(f"{milliwatts}\n")
    out = tmp_path / "gated"

    def pull(version, *extra):
        return subprocess.run(
            [py36, str(zipapp), "pull", "--store", str(fleet["store"]), "--project", "fleet", "--version", version,
             "--model", "det", "--public-key", str(fleet["public_path"]), "--out", str(out), "--health",
             "--health-runs", "5", *extra], capture_output=True, text=True, timeout=120,
            env={"FLEETBUILD_PROBE_ROOT": str(fleet["root"]), "PATH": f"{fleet['bin']}:/usr/bin:/bin",
                 "PYTHONPATH": str(FAKE_TRT10), "FLEETBUILD_CUDART": str(fake_cudart)})

    good = pull("5.0")
    assert good.returncode == 0, good.stderr
    verdict = json.loads((out / "det.health.json").read_text())
    golden = next(c for c in verdict["checks"] if c["name"] == "golden")
    assert golden["ok"] and "1 output(s) within cosine 0.99 (worst 1.0000)" in golden["detail"]
    assert verdict["figures"]["cosine"] == {"y": 1.0} and verdict["figures"]["runs"] == 5
    assert verdict["figures"]["watts"] == 7.0 and verdict["figures"]["p99_ms"] >= verdict["figures"]["p50_ms"]
    bad = pull("6.0")
    assert bad.returncode == 1
    assert "golden: output y is off its golden sample: cosine -1.0000 < 0.99" in bad.stderr and "restored 5.0" in bad.stderr
    hungry = pull("6.0", "--max-watts", "5")                          # the gate stops at the first failed check
    assert hungry.returncode == 1 and "cosine -1.0000" in hungry.stderr
    golden_release(fleet, "7.0", scale=1.0, offset=1e-4)              # within tolerance, but over the power budget
    over = pull("7.0", "--max-watts", "5")
    assert over.returncode == 1 and "draws 7.0 W, over the budget of 5 W" in over.stderr
    assert (out / "det.plan").read_bytes() == fake_plan(tag=json.dumps(
        {"io": {"inputs": {"x": "FLOAT"}, "outputs": {"y": "FLOAT"}}, "compute": {"scale": 1.0, "offset": 0.0}}).encode())
    assert sorted(p.name for p in (out / ".golden").iterdir()) == [
        json.loads((out / "det.manifest.json").read_text())["release"]["golden"]["inputs"]["x"].rsplit("/", 1)[1]]


def test_no_engine_for_the_device_is_not_retried_and_an_unreachable_store_backs_off(fleet, tmp_path):
    out = tmp_path / "other-gpu"
    other = dict(fleet["facts"], gpus=[dict(g, compute_capability="8.6") for g in fleet["facts"]["gpus"]])
    opts = AgentOptions(str(fleet["store"]), "fleet", "stable", ["det"], fleet["public"], str(out), device_id="x1",
                        facts=other, report=ReportSink(directory=str(fleet["store"])))
    first = run_cycle(opts)
    assert first.status == "failed" and "no engine of det" in first.lines[0]
    report = fleet["store"] / "reports" / "fleet" / "stable" / "x1.json"
    filed = report.stat().st_mtime_ns
    second = run_cycle(opts)                           # the same release: not asked again, nothing reported
    assert second.status == "unchanged" and "not retried until the rollout changes" in second.lines[0]
    assert report.stat().st_mtime_ns == filed

    gone = AgentOptions(str(tmp_path / "no-store"), "fleet", "stable", ["det"], fleet["public"], str(tmp_path / "d2"),
                        device_id="x2", facts=fleet["facts"])
    failed = run_cycle(gone)
    assert failed.status == "failed" and "does not exist" in failed.lines[0] and "next try in" in failed.lines[0]
    waiting = run_cycle(gone)
    assert waiting.status == "backing off"
    state = json.loads((tmp_path / "d2" / ".fleetbuild-agent.json").read_text())
    assert state["failures"] == 1 and state["next_try"] > 0


def test_the_gate_on_a_real_tensorrt_rtx_engine_reports_what_its_runtime_says(tmp_path):
    """Real TensorRT-RTX, as far as it goes without a GPU: the gate loads a real engine with the real
    runtime; here (no CUDA driver) the runtime refuses and the verdict carries its words."""
    from conftest import ROOT, import_or_require

    trt = import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    sys.path.insert(0, str(ROOT / "examples" / "quickstart"))
    import make_models

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(make_models.conv_bn_relu().SerializeToString())
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM80, 0)
    (tmp_path / "det.plan").write_bytes(bytes(builder.build_serialized_network(network, config)))
    (tmp_path / "det.manifest.json").write_text(json.dumps({"tensorrt": {"flavor": "tensorrt-rtx"}, "release": {}}))
    verdict = HealthGate().check(str(tmp_path), "det")
    [check] = verdict["checks"]
    if check["ok"]:                                   # a machine with an NVIDIA GPU and driver
        assert check["detail"] == f"loaded by TensorRT-RTX {trt.__version__}"
    else:
        assert check["detail"].startswith(f"TensorRT-RTX {trt.__version__} cannot load it: ")
        assert "Cuda" in check["detail"] or "CUDA" in check["detail"]
        assert verdict["reason"].startswith("deserialize: ")


@pytest.mark.parametrize("generation,version", [("trt82", "8.2.1.8"), ("trt86", "8.6.2.3"), ("trt10", "10.3.0.26"),
                                                ("trt11", "11.4.1.2")])
def test_the_golden_gate_on_each_fake_tensorrt_generation(generation, version, tmp_path, fake_cudart, monkeypatch):
    """The gate's inference path against each FAKE TensorRT generation's API (tests/fixtures/fake_tensorrt):
    the tensor API from 8.5 runs the samples; 8.2 (bindings only) says the golden check is skipped."""
    import io

    import numpy as np

    monkeypatch.syspath_prepend(str(FIXTURES / "fake_tensorrt" / generation))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setenv("FLEETBUILD_CUDART", str(fake_cudart))
    parts = tuple(int(p) for p in version.split("."))
    tag = json.dumps({"io": {"inputs": {"x": "FLOAT"}, "outputs": {"y": "FLOAT"}}, "compute": {"scale": 1.0}})
    (tmp_path / "det.plan").write_bytes(fake_plan(parts, tag.encode()))
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, x)
    (tmp_path / "x.npy").write_bytes(buffer.getvalue())
    golden = {"inputs": {"x": str(tmp_path / "x.npy")}, "outputs": {"y": str(tmp_path / "x.npy")}, "cosine": 0.99}
    (tmp_path / "det.manifest.json").write_text(json.dumps({"tensorrt": {"flavor": "tensorrt"},
                                                            "release": {"golden": golden}}))
    try:
        verdict = HealthGate(runs=3).check(str(tmp_path), "det")
    finally:
        sys.modules.pop("tensorrt", None)
    assert verdict["ok"], verdict
    [_, gate] = verdict["checks"]
    if generation == "trt82":
        assert gate["detail"] == "skipped: TensorRT 8.2.1.8 has no tensor API (8.5+): golden samples are not run"
    else:
        assert verdict["figures"]["cosine"] == {"y": 1.0} and verdict["figures"]["runs"] == 3
