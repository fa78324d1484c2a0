"""`fleetbuild deploy` over real Ansible and SSH to device stand-ins (loopback sshd hosts with the
fixture GPU identities; Python 3.6 for the Nano, 3.10 for the others): the right engine per device,
a device nothing fits (with its reason), unchanged on a second run, dry run, and a canary that
stops the rollout."""
from __future__ import annotations

import hashlib
import json
import sys

import pytest
from conftest import FIXTURES, as_at_a_terminal, pyenv_python, require
from test_device_choices import release

from fleetbuild.store import signing

sys.path.insert(0, str(FIXTURES))
from fleet import FleetHost  # noqa: E402

CONFIG = """
[project]
name = "fleet"

[models.det]
onnx = "models/conv_bn_relu.onnx"

[matrix]
targets = ["t4"]

[inventory]
path = "inventory.ini"
"""


@pytest.fixture
def devices(project, fleet_factory, tmp_path):
    py36, py310 = pyenv_python("3.6"), pyenv_python("3.10")
    require(py36 is not None and py310 is not None, "Python 3.6 and 3.10 (pyenv)", "the machine image's pyenv")
    fleet = fleet_factory([FleetHost("a-orin", "devices", "orin", py310), FleetHost("b-nano", "devices", "nano", py36),
                           FleetHost("c-t4", "devices", "t4", py310)])
    fleet.inventory(tmp_path / "inventory.ini")
    project.write(CONFIG)
    _, public, key = signing.generate(tmp_path / "keys", {})
    return fleet, public, key


def publish_release(tmp_path, key, version="1.0", channel=None):
    """det for the T4 (TensorRT 10.3) and the Nano (TensorRT 8.2.1), none for the Orin (8.6)."""
    import shutil

    release(tmp_path / "rel", key, [("det/t4/fp16", "7.5", "10.3.0.26", {}), ("det/nano/fp16", "5.3", "8.2.1.8", {})],
            version=version, channel=channel)
    shutil.copytree(tmp_path / "rel" / "store", tmp_path / "artifacts", dirs_exist_ok=True)


def test_deploy_installs_per_device_and_explains(devices, cli, tmp_path):
    fleet, public, key = devices
    publish_release(tmp_path, key)
    dest = str(tmp_path / "device-engines" / "{host}")        # the stand-ins share one file system
    dry = cli("deploy", "--group", "devices", "--version", "1.0", "--dest", dest, "--public-key", str(public),
              "--dry-run", "--json")
    assert dry.code == 1, dry.err
    by_device = {r["device"]: r for r in json.loads(dry.out)["results"]}
    assert by_device["c-t4"]["status"] == "would install" and by_device["c-t4"]["job_id"] == "det/t4/fp16"
    assert by_device["b-nano"]["job_id"] == "det/nano/fp16"
    assert by_device["a-orin"]["status"] == "failed"
    assert "det/t4/fp16: built for TensorRT 10.3 on CC 7.5; this device has TensorRT 8.6.2.3 on CC 8.7" \
        in by_device["a-orin"]["reason"]
    result = cli("deploy", "--group", "devices", "--version", "1.0", "--dest", dest, "--public-key", str(public),
                 "--json", "deploy.json")
    assert result.code == 1, result.err
    rows = {r["device"]: r for r in json.loads((tmp_path / "deploy.json").read_text())["results"]}
    assert (rows["c-t4"]["status"], rows["b-nano"]["status"], rows["a-orin"]["status"]) == (
        "installed", "installed", "failed")
    # stderr: one line per device as soon as its result is known; the table follows on stdout
    lines = result.err.splitlines()
    assert [line for line in lines if line.startswith("installed det/t4/fp16 on c-t4 (")] and \
        "installed det/nano/fp16 on b-nano" in result.err, result.err
    assert [line for line in lines if line.startswith("FAILED det on a-orin: no engine of det")], result.err
    assert len(lines) == 3, result.err
    assert (tmp_path / "device-engines" / "c-t4" / "det.plan").read_bytes().startswith(b"ftrtdet/t4/fp16")
    assert (tmp_path / "device-engines" / "b-nano" / "det.plan").read_bytes().startswith(b"ftrtdet/nano/fp16")
    assert not (tmp_path / "device-engines" / "a-orin" / "det.plan").exists()
    again = cli("deploy", "--group", "devices", "--version", "1.0", "--dest", dest, "--public-key", str(public),
                "--json", "again.json", "--model", "det")
    rows = {r["device"]: r["status"] for r in json.loads((tmp_path / "again.json").read_text())["results"]}
    assert (rows["c-t4"], rows["b-nano"]) == ("unchanged", "unchanged")
    # what crossed: the first time the engine, its manifest and the key too; then only the index and
    # its signature (they may change under their names) and the device's facts for its pull
    sent = [{r["device"]: r["sent_bytes"] for r in json.loads((tmp_path / name).read_text())["results"]}
            for name in ("deploy.json", "again.json")]
    release_dir = tmp_path / "artifacts" / "releases" / "fleet" / "1.0"
    always = sum(p.stat().st_size for p in [release_dir / "index.json", *release_dir.glob("signatures/*")])
    manifest = next(p for p in (tmp_path / "artifacts" / "builds").glob("*.json") if b"det/t4/fp16" in p.read_bytes())
    assert "Traceback" not in result.err + again.err
    assert always < sent[1]["c-t4"] < always + 4096
    assert sent[0]["c-t4"] - sent[1]["c-t4"] == 64 + manifest.stat().st_size + len(public.read_bytes())
    workdir = fleet.hosts["c-t4"].workdir / "store"
    assert not list(workdir.glob("facts-*")) and not list(workdir.glob("urls-*"))     # per-deploy files are gone


def test_a_republished_release_reaches_devices_that_had_it(devices, cli, tmp_path):
    """A release republished under the same version (a model added) replaces the index the devices
    were sent before: the T4, which had the first index, finds the new model's engine."""
    import shutil

    fleet, public, key = devices
    publish_release(tmp_path, key)
    dest = str(tmp_path / "device-engines" / "{host}")
    args = ("deploy", "--group", "devices", "--version", "1.0", "--dest", dest, "--public-key", str(public), "--json")
    first = {(r["device"], r["model"]): r["status"] for r in json.loads(cli(*args).out)["results"]}
    assert first[("c-t4", "det")] == "installed"
    release(tmp_path / "rel", key, [("seg/t4/fp16", "7.5", "10.3.0.26", {})])       # merged into 1.0, sequence 2
    shutil.copytree(tmp_path / "rel" / "store", tmp_path / "artifacts", dirs_exist_ok=True)
    rows = {(r["device"], r["model"]): r for r in json.loads(cli(*args).out)["results"]}
    assert (rows[("c-t4", "det")]["status"], rows[("c-t4", "seg")]["status"]) == ("unchanged", "installed"), rows
    assert (tmp_path / "device-engines" / "c-t4" / "seg.plan").read_bytes().startswith(b"ftrtseg/t4/fp16")


def test_the_device_keeps_one_copy_and_heals_a_damaged_one(devices, cli, tmp_path):
    """The installed engine is a hard link of the device's store copy (no second copy on the device);
    a damaged object in that copy is refused, dropped, and sent again by the next deploy."""
    import shutil

    fleet, public, key = devices
    publish_release(tmp_path, key)
    dest = str(tmp_path / "device-engines" / "{host}")
    args = ("deploy", "--group", "devices", "--version", "1.0", "--dest", dest, "--public-key", str(public), "--json")
    assert cli(*args).code == 1                                     # the Orin has no engine: a failure row
    installed = tmp_path / "device-engines" / "c-t4" / "det.plan"
    blobs = fleet.hosts["c-t4"].workdir / "store" / "blobs" / "sha256"
    copy = blobs / hashlib.sha256(installed.read_bytes()).hexdigest()
    assert installed.stat().st_ino == copy.stat().st_ino and copy.stat().st_nlink == 2
    _, entries = release(tmp_path / "rel", key, [("seg/t4/fp16", "7.5", "10.3.0.26", {})])
    shutil.copytree(tmp_path / "rel" / "store", tmp_path / "artifacts", dirs_exist_ok=True)
    planted = fleet.hosts["c-t4"].workdir / "store" / "blobs" / "sha256" / entries["seg/t4/fp16"]["engine"]["sha256"]
    planted.write_bytes(b"damaged")                                 # the device's copy went bad before the deploy
    rows = {(r["device"], r["model"]): r for r in json.loads(cli(*args, "--model", "seg").out)["results"]}
    assert rows[("c-t4", "seg")]["status"] == "failed" and "corrupted" in rows[("c-t4", "seg")]["reason"], rows
    assert not planted.exists() and not (tmp_path / "device-engines" / "c-t4" / "seg.plan").exists()
    rows = {(r["device"], r["model"]): r for r in json.loads(cli(*args, "--model", "seg").out)["results"]}
    assert rows[("c-t4", "seg")]["status"] == "installed", rows
    assert (tmp_path / "device-engines" / "c-t4" / "seg.plan").read_bytes().startswith(b"ftrtseg/t4/fp16")


def test_a_deploy_by_channel_is_installed_as_from_that_channel(devices, cli, tmp_path):
    """The devices resolve the channel themselves, from the signed channel file sent with the
    release: `installed` on a device then says the engine came from `stable`."""
    from fleetbuild.remote.listing import installed

    fleet, public, key = devices
    publish_release(tmp_path, key, version="1.0", channel="stable")
    result = cli("deploy", "--group", "devices", "--channel", "stable", "--dest",
                 str(tmp_path / "device-engines" / "{host}"), "--public-key", str(public), "--json", "deploy.json")
    rows = {r["device"]: r["status"] for r in json.loads((tmp_path / "deploy.json").read_text())["results"]}
    assert (rows["c-t4"], rows["b-nano"]) == ("installed", "installed"), result.err
    for device in ("c-t4", "b-nano"):
        [row] = installed(str(tmp_path / "device-engines" / device))
        assert (row["channel"], row["version"], row["project"]) == ("stable", "1.0", "fleet"), row


def test_canary_failure_stops_the_rollout(devices, cli, tmp_path):
    """The Nano's engine is corrupted in the store: the Nano is the canary, its device-side check
    refuses the engine, and the T4 is not touched."""
    fleet, public, key = devices
    publish_release(tmp_path, key)
    index = json.loads((tmp_path / "artifacts" / "releases" / "fleet" / "1.0" / "index.json").read_text())
    blob = tmp_path / "artifacts" / "blobs" / "sha256" / index["entries"]["det/nano/fp16"]["engine"]["sha256"]
    blob.write_bytes(blob.read_bytes()[::-1])
    result = cli("deploy", "--group", "devices", "--version", "1.0", "--dest", str(tmp_path / "e"),
                 "--public-key", str(public), "--canary", "1", "--json", "canary.json")
    assert result.code == 1
    rows = {r["device"]: (r["status"], r["reason"]) for r in json.loads((tmp_path / "canary.json").read_text())["results"]}
    assert rows["b-nano"][0] == "failed" and "engine of det/nano/fp16 is corrupted in the store" in rows["b-nano"][1]
    assert rows["c-t4"] == ("not started", "the canary failed")
    assert "canary failed on b-nano: the rollout stops" in result.err
    assert not (tmp_path / "e" / "det.plan").exists()


def test_deploy_from_a_private_bucket_with_presigned_urls(devices, cli, tmp_path, s3_server, s3_bucket):
    """The devices hold no credentials: each gets short-lived presigned URLs for exactly the objects
    it needs, downloads from the S3 server itself, and the URL file is gone afterwards."""
    import hashlib

    import fleetbuild_plugins.s3 as s3_plugin
    from fleetbuild.plugin.manager import Plugins
    from fleetbuild.store.publish import publish

    fleet, public, key = devices
    env = s3_server.env()
    store = Plugins(entry_points=False, objects=[s3_plugin]).store_for(
        f"s3://{s3_bucket}/fleet", {"path_style": True}, tmp_path, "fleet.toml", env)
    entries = {}
    for job_id, cc, trt in (("det/t4/fp16", "7.5", "10.3.0.26"), ("det/nano/fp16", "5.3", "8.2.1.8")):
        engine = (b"ftrt" + job_id.encode()).ljust(4096, b"\0")
        digest = hashlib.sha256(engine).hexdigest()
        store.write_bytes(f"blobs/sha256/{digest}", engine)
        store.write_bytes(f"builds/{digest}.json", json.dumps({"build_key": digest, "job_id": job_id}).encode())
        entries[job_id] = {"target": job_id.split("/")[1], "variant": "", "precision": "fp16",
                           "compute_capability": cc, "tensorrt": {"flavor": "tensorrt", "version": trt},
                           "build_key": digest, "manifest": f"builds/{digest}.json", "compat": {},
                           "engine": {"file": "engine.plan", "sha256": digest, "size": len(engine)}}
    publish(store, "fleet", "2.0", entries, key)
    toml = tmp_path / "fleet.toml"
    toml.write_text(toml.read_text() + f'\n[store]\nurl = "s3://{s3_bucket}/fleet"\npath_style = true\n\n'
                    '[plugins]\nload = ["fleetbuild_plugins.s3"]\n')
    result = cli("deploy", "--group", "devices", "--version", "2.0", "--dest", str(tmp_path / "s3dev" / "{host}"),
                 "--public-key", str(public), "--json", "s3.json", "--model", "det", extra_env=env)
    rows = {r["device"]: r["status"] for r in json.loads((tmp_path / "s3.json").read_text())["results"]}
    assert (rows["c-t4"], rows["b-nano"], rows["a-orin"]) == ("installed", "installed", "failed"), result.err
    assert (tmp_path / "s3dev" / "b-nano" / "det.plan").read_bytes().startswith(b"ftrtdet/nano/fp16")
    assert "X-Amz-Signature" not in result.out + result.err
    leftovers = [p for host in fleet.hosts.values() for p in host.workdir.rglob("urls-*.json")]
    assert leftovers == []
    assert not any(p.name.endswith(".plan") or "blobs" in p.parts for host in fleet.hosts.values()
                   for p in (host.workdir / "store").rglob("*") if p.is_file())      # nothing but the key went by SSH


def _deploy_in_background(project, fleet_factory, tmp_path, pythons: dict, first_address: int):
    """Two T4 stand-ins with the given host Pythons, a release, and `fleetbuild deploy` started in
    its own process group: (fleet, process, the processes that ran before)."""
    import os
    import subprocess

    from test_fleet_faults import processes

    fleet = fleet_factory([FleetHost(name, "devices", "t4", python) for name, python in pythons.items()],
                          first_address=first_address)
    fleet.inventory(tmp_path / "inventory.ini")
    project.write(CONFIG)
    _, public, key = signing.generate(tmp_path / "keys", {})
    publish_release(tmp_path, key)
    before = processes()
    proc = subprocess.Popen([sys.executable, "-m", "fleetbuild", "deploy", "--group", "devices", "--version", "1.0",
                             "--dest", str(tmp_path / "engines" / "{host}"), "--public-key", str(public), "--json",
                             "deploy.json"], cwd=project.root, env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=as_at_a_terminal)
    return fleet, proc, before


def _interrupt(proc, project, tmp_path, fleet, before) -> dict:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it): exit 130 in under 30 s,
    nothing installed, no process left on the controller or the devices. The rows by device."""
    import os
    import signal
    import time

    from test_fleet_faults import controller_leftovers, gone, worker_processes

    started = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert time.time() - started < 30, err       # not waiting for the 60 s sleeps
    assert "Traceback" not in err and "stopping the installs in flight" in err, err
    assert not list((tmp_path / "engines").rglob("*.plan"))
    gone(lambda: controller_leftovers(before), 15, "the controller's ssh and ansible processes")
    gone(lambda: worker_processes(fleet), 15, "the pulls and probes on the devices")
    return {r["device"]: r for r in json.loads((project.root / "deploy.json").read_text())["results"]}


def test_an_interrupted_deploy_stops_the_installs_and_leaves_nothing_behind(project, fleet_factory, tmp_path):
    """Ctrl-C while the devices pull (a slow device Python): every device says it was interrupted."""
    from test_fleet_faults import slow_python, wait_for, worker_processes

    python = pyenv_python("3.10")
    require(python is not None, "Python 3.10 (pyenv)", "the machine image's pyenv")
    slow = slow_python(tmp_path / "python", python, "pull", 60)
    fleet, proc, before = _deploy_in_background(project, fleet_factory, tmp_path, {"c-t4": slow, "d-t4": slow}, 90)
    wait_for(lambda: all(any(" pull " in p and f"/{name}/" in p for p in worker_processes(fleet))
                         for name in ("c-t4", "d-t4")), 60, "the pulls on both devices")
    rows = _interrupt(proc, project, tmp_path, fleet, before)
    assert {(name, r["status"]) for name, r in rows.items()} == {("c-t4", "interrupted"), ("d-t4", "interrupted")}


def test_a_device_slow_to_probe_holds_up_none_of_the_others(project, fleet_factory, tmp_path):
    """Each device installs as soon as its own probe is in: d-t4 is pulling while c-t4 (its probe
    takes a minute) is still being probed. A Ctrl-C then stops both the play and d-t4's install:
    c-t4 was not started."""
    from test_fleet_faults import slow_python, wait_for, worker_processes

    python = pyenv_python("3.10")
    require(python is not None, "Python 3.10 (pyenv)", "the machine image's pyenv")
    fleet, proc, before = _deploy_in_background(project, fleet_factory, tmp_path, {
        "c-t4": slow_python(tmp_path / "slow-probe", python, "probe", 60),
        "d-t4": slow_python(tmp_path / "slow-pull", python, "pull", 60)}, 94)
    wait_for(lambda: any(" pull " in p and "/d-t4/" in p for p in worker_processes(fleet)), 40,
             "d-t4's pull while c-t4 is probed")
    assert proc.poll() is None
    rows = _interrupt(proc, project, tmp_path, fleet, before)
    assert rows["d-t4"]["status"] == "interrupted", rows
    assert (rows["c-t4"]["status"], rows["c-t4"]["reason"]) == ("not started", "interrupted"), rows


def test_keep_connections_leaves_the_masters_for_the_next_run(devices, cli, tmp_path):
    """--keep-connections: a dry run leaves each device's SSH master up, the deploy after it rides
    the same master (same PID: no new connection, no new key exchange), and a run without the flag
    closes it."""
    import re
    import subprocess

    from fleetbuild.build.dispatch.probe import control_dir
    from fleetbuild.build.dispatch.transport import Transport
    from fleetbuild.build.hosts import load_inventory

    fleet, public, key = devices
    publish_release(tmp_path, key)
    hosts = {h.name: h for h in load_inventory(tmp_path / "inventory.ini").group("devices")}

    def master_pid(name: str) -> str | None:
        argv = Transport(hosts[name], control_dir()).ssh_argv()
        proc = subprocess.run(argv[:-1] + ["-O", "check", argv[-1]], capture_output=True, text=True, timeout=30)
        found = re.search(r"pid=(\d+)", proc.stderr + proc.stdout)
        return found.group(1) if proc.returncode == 0 and found else None

    deploy = ["deploy", "--group", "devices", "--version", "1.0", "--dest", str(tmp_path / "engines" / "{host}"),
              "--public-key", str(public), "--model", "det"]
    cli(*deploy, "--dry-run", "--keep-connections")
    first = master_pid("c-t4")
    assert first is not None
    result = cli(*deploy, "--keep-connections", "--json", "deploy.json")
    rows = {r["device"]: r["status"] for r in json.loads((tmp_path / "deploy.json").read_text())["results"]}
    assert rows["c-t4"] == "installed", result.err
    assert master_pid("c-t4") == first
    cli(*deploy, "--dry-run")
    assert master_pid("c-t4") is None and master_pid("b-nano") is None


def test_deploy_runs_the_health_gate_on_each_device(devices, cli, tmp_path):
    """--health-cmd on every device after its install: a failing one takes the new engine out again
    (no engine before it) and fails that device; a passing one keeps it and records the verdict."""
    fleet, public, key = devices
    publish_release(tmp_path, key)
    dest = str(tmp_path / "gated" / "{host}")
    failing = cli("deploy", "--group", "devices", "--version", "1.0", "--dest", dest, "--public-key", str(public),
                  "--model", "det", "--health-cmd", "sh -c 'echo service did not answer >&2; exit 4'", "--json")
    rows = {r["device"]: r for r in json.loads(failing.out)["results"]}
    assert failing.code == 1 and rows["c-t4"]["status"] == "failed", rows
    assert "failed its health gate (command: sh exited 4: service did not answer)" in rows["c-t4"]["reason"]
    assert "removed it (no engine before it)" in rows["c-t4"]["reason"]
    assert not (tmp_path / "gated" / "c-t4" / "det.plan").exists()
    passing = cli("deploy", "--group", "devices", "--version", "1.0", "--dest", dest, "--public-key", str(public),
                  "--model", "det", "--health-cmd", "true", "--json")
    rows = {r["device"]: r for r in json.loads(passing.out)["results"]}
    assert rows["c-t4"]["status"] == "installed" and rows["b-nano"]["status"] == "installed", rows
    verdict = json.loads((tmp_path / "gated" / "b-nano" / "det.health.json").read_text())
    assert verdict["ok"] and [c["name"] for c in verdict["checks"]][-1] == "command"


def test_install_agent_puts_units_on_devices_registers_their_keys_and_the_unit_runs(devices, cli, tmp_path):
    """deploy --install-agent over SSH: the unit's ExecStart (run here as systemd would, with the
    stand-in's environment) follows the channel; the device's key is pinned in the store."""
    import subprocess

    from fleetbuild.devices.agent_install import parse_exec_start

    fleet, public, key = devices
    publish_release(tmp_path, key, channel="stable")
    dest = str(tmp_path / "agent-engines" / "{host}")
    result = cli("deploy", "--group", "devices", "--channel", "stable", "--install-agent", "--agent-store",
                 str(tmp_path / "artifacts"), "--dest", dest, "--public-key", str(public), "--model", "det",
                 "--systemd-dir", str(tmp_path / "units" / "{host}"), "--no-enable", "--jitter", "0",
                 "--health-cmd", "true", "--report-to", str(tmp_path / "artifacts"), "--json")
    assert result.code == 0, result.err
    rows = {r["device"]: r for r in json.loads(result.out)["results"]}
    assert {r["status"] for r in rows.values()} == {"installed, timer not enabled"}, rows
    pins = json.loads((tmp_path / "artifacts" / "rollouts" / "fleet" / "device-keys.json").read_text())
    assert sorted(pins) == ["a-orin", "b-nano", "c-t4"]
    unit = (tmp_path / "units" / "c-t4" / "fleetbuild-agent.service").read_text()
    timer = (tmp_path / "units" / "c-t4" / "fleetbuild-agent.timer").read_text()
    assert "OnUnitActiveSec=15min" in timer
    argv = parse_exec_start(next(line for line in unit.splitlines() if line.startswith("ExecStart="))[len("ExecStart="):])
    assert argv[2:4] == ["agent", "--store"] and ["--device-id", "c-t4"] == argv[argv.index("--device-id"):][:2]
    host = fleet.hosts["c-t4"]
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         env={"FLEETBUILD_PROBE_ROOT": str(host.root), "PATH": f"{host.bin_dir}:/usr/bin:/bin"})
    assert ran.returncode == 0, ran.stderr
    assert "installed det/t4/fp16" in ran.stdout and "healthy" in ran.stdout
    report = json.loads((tmp_path / "artifacts" / "reports" / "fleet" / "stable" / "c-t4.json").read_text())
    assert report["key"] == pins["c-t4"]                              # signed by the key deploy registered


def test_deploy_results_land_as_reports_in_the_rollout_status(devices, cli, tmp_path):
    """Push and pull in one status: a deploy by channel files each device's result as its report,
    signed with the fleet's key; `rollout status` counts them, and a tampered one is refused."""
    fleet, public, key = devices
    publish_release(tmp_path, key, channel="stable")
    publish_release(tmp_path, key, version="2.0")
    signing_env = {"FLEETBUILD_SIGNING_KEY": str(tmp_path / "keys" / "fleetbuild.key")}
    assert cli("rollout", "start", "--channel", "stable", "--version", "2.0", "--phases", "100",
               extra_env=signing_env).code == 0
    result = cli("deploy", "--group", "devices", "--channel", "stable", "--dest", str(tmp_path / "pushed" / "{host}"),
                 "--public-key", str(public), extra_env=signing_env)
    assert result.code == 1, result.err                              # the Orin has no engine
    status = json.loads(cli("rollout", "status", "--channel", "stable", "--json", extra_env=signing_env).out)
    [phase] = status["phases"]
    assert (phase["reported"], phase["healthy"], phase["failed"]) == (3, 2, 1), phase
    assert "no engine of det" in phase["top_reasons"][0][0] and status["forged_reports"] == []
    report = tmp_path / "artifacts" / "reports" / "fleet" / "stable" / "c-t4.json"
    envelope = json.loads(report.read_text())
    envelope["report"] = envelope["report"] + " "                     # one byte more: the signature no longer fits
    report.write_text(json.dumps(envelope))
    status = json.loads(cli("rollout", "status", "--channel", "stable", "--json", extra_env=signing_env).out)
    assert status["forged_reports"] == ["c-t4"]
