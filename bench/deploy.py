#!/usr/bin/env python3
"""`fleetbuild deploy` to 8 device stand-ins vs to one: wall time (goal: 8 devices <= 2x one).

Device stand-ins are the test fleet's loopback sshd hosts (fixture T4 identity, TensorRT 10.3,
Python 3.10). Each round publishes a new release with a new --mib MiB engine in a file:// store and
deploys it to a fresh --dest, so every device is probed, sent the engine (it does not have it yet)
and pulls it: a first rollout, not a re-deploy.

The stand-ins share this machine's CPUs with the controller; their own work (sshd, shell, probe,
pull) is printed apart. `--login-rc` keeps the machine image's root ~/.bashrc running on every SSH
session of a stand-in (it runs `pyenv init`, 0.07-0.12 CPU-s each); by default the stand-ins' sshd
sets SHLVL=1 so bash skips it, like a device's stock .bashrc, which returns at once for
non-interactive shells. `--kex ALG` has the stand-ins' sshd offer only that key exchange: OpenSSH
9.2's default (sntrup761x25519) costs the controller's ssh about 0.13 CPU-s per new connection,
curve25519-sha256 (what the OpenSSH 7.6 or 8.2 of a JetPack 4 or 5 device negotiates) about 0.02.
Needs root (sshd) and the machine image's pyenv Python 3.10.

    .venv/bin/python bench/deploy.py [--devices 8] [--mib 16] [--runs 3] [--login-rc] [--kex ALG]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "fixtures")]


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine: the controller and every stand-in share it."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


BUSY: dict[str, list[float]] = {"one": [], "many": []}
CPU: dict[str, list[tuple[float, float]]] = {"one": [], "many": []}     # (controller, device stand-ins) CPU-s
SSHD_PIDS: list[int] = []


def cpu_seconds() -> tuple[float, float]:
    """(this process and its reaped children, every stand-in's sshd and its reaped session processes)."""
    import resource

    own = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for field in ("ru_utime", "ru_stime"))
    ticks = os.sysconf("SC_CLK_TCK")
    devices = 0.0
    for pid in SSHD_PIDS:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        devices += sum(int(v) for v in fields[11:15]) / ticks      # utime stime cutime cstime
    return own, devices


def deploy_once(project: Path, env: dict, group: str, version: str, dest: Path, public: Path) -> float:
    from fleetbuild.cli import main

    out, err = io.StringIO(), io.StringIO()
    busy_before, total_before = cpu_ticks()
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    code = main(["-c", str(project / "fleet.toml"), "deploy", "--group", group, "--version", version, "--dest",
                 str(dest / "{host}"), "--public-key", str(public), "--json"], env=env, stdout=out, stderr=err)
    elapsed = time.perf_counter() - start
    busy_after, total_after = cpu_ticks()
    BUSY[group].append((busy_after - busy_before) / max(1, total_after - total_before))
    cpu_after = cpu_seconds()
    CPU[group].append((cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]))
    results = json.loads(out.getvalue())["results"] if out.getvalue() else []
    if code != 0 or not all(r["status"] == "installed" for r in results):
        sys.exit(f"deploy failed ({code}): {err.getvalue()[-500:]} {results}")
    return elapsed


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--login-rc", action="store_true",
                        help="let the stand-ins' bash run root's ~/.bashrc on every SSH session")
    parser.add_argument("--kex", help="the only key exchange the stand-ins' sshd offers, e.g. curve25519-sha256")
    args = parser.parse_args()
    import _needs

    _needs.root("it starts sshd processes for the device stand-ins")
    _needs.command("sshd", "make test-deps (apt-get install openssh-server)", also=("/usr/sbin/sshd",))
    import fleet as fleet_fixture
    from conftest import pyenv_python
    from fleet import Fleet, FleetHost

    if not args.login_rc:
        fleet_fixture.SSHD_CONFIG += "SetEnv SHLVL=1\n"     # bash reads ~/.bashrc under sshd only at level 1
    if args.kex:
        fleet_fixture.SSHD_CONFIG += f"KexAlgorithms {args.kex}\n"

    from fleetbuild.store import signing
    from fleetbuild.plugin.manager import Plugins
    from fleetbuild.store.publish import publish

    python = pyenv_python("3.10")
    if python is None:
        sys.exit("deploy.py needs pyenv's Python 3.10 (the machine image's)")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        hosts = [FleetHost(f"dev-{i}", "many", "t4", python) for i in range(args.devices)]
        hosts.append(FleetHost("solo-0", "one", "t4", python))
        fleet = Fleet(base / "fleet", hosts, first_address=150).start()
        SSHD_PIDS[:] = [h.process.pid for h in fleet.hosts.values()]
        try:
            project = base / "project"
            (project / "models").mkdir(parents=True)
            (project / "models" / "m.onnx").write_bytes(b"")
            fleet.inventory(project / "inventory.ini")
            (project / "fleet.toml").write_text('[project]\nname = "bench"\n[models.det]\nonnx = "models/m.onnx"\n'
                                                '[matrix]\ntargets = ["t4"]\n[inventory]\npath = "inventory.ini"\n')
            store = Plugins(entry_points=False).store_for("file://./artifacts", {}, project, "bench", {})
            _, public, key = signing.generate(base / "keys", {})

            def new_release(version: str) -> None:
                engine = project / "engine.plan"
                engine.write_bytes(b"ftrt" + os.urandom((args.mib << 20) - 4))
                digest = hashlib.sha256(engine.read_bytes()).hexdigest()
                store.upload_file(f"blobs/sha256/{digest}", engine)
                store.write_bytes(f"builds/{digest}.json", json.dumps({"build_key": digest}).encode())
                publish(store, "bench", version, {"det/t4/fp16": {
                    "target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5", "compat": {},
                    "tensorrt": {"flavor": "tensorrt", "version": "10.3.0.26"}, "build_key": digest,
                    "manifest": f"builds/{digest}.json",
                    "engine": {"file": "engine.plan", "sha256": digest, "size": engine.stat().st_size}}}, key)

            env = {"FLEETBUILD_CACHE_DIR": str(base / "cache"), "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": "1",
                   "HOME": str(base), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            one, many = [], []
            for run in range(args.runs):
                version = f"1.{run}"
                new_release(version)
                for group, times in ((("one", one), ("many", many)) if run % 2 == 0 else
                                     (("many", many), ("one", one))):
                    times.append(deploy_once(project, env, group, version, base / f"dest-{group}-{run}", public))
        finally:
            fleet.stop()
    solo, fleet_time = statistics.median(one), statistics.median(many)
    print(f"engine {args.mib} MiB, {args.runs} runs, a new release each (probe, send, device pull, install); "
          f"stand-ins {'run' if args.login_rc else 'skip'} root's ~/.bashrc"
          + (f"; stand-ins offer only the {args.kex} key exchange" if args.kex else ""))
    busy = {group: statistics.median(values) for group, values in BUSY.items()}
    cpu = {group: (statistics.median(c for c, _ in values), statistics.median(d for _, d in values))
           for group, values in CPU.items()}
    print(f"1 device:  median {solo:.2f} s  (machine CPU busy {busy['one']:.0%} of {os.cpu_count()} CPUs)")
    print(f"{args.devices} devices: median {fleet_time:.2f} s  (machine CPU busy {busy['many']:.0%})  ratio "
          f"{fleet_time / solo:.2f}  goal <= 2.0: {'met' if fleet_time / solo <= 2.0 else 'NOT met'}")
    for group, count in (("one", 1), (("many"), args.devices)):
        controller, devices = cpu[group]
        print(f"CPU-s, {count} device{'s' if count > 1 else ''}: controller {controller:.2f} (ansible included), "
              f"device stand-ins {devices:.2f} ({devices / count:.2f} each: sshd, shell, probe, pull)")
    controller, devices = cpu["many"]
    cpus = os.cpu_count() or 1
    print(f"{args.devices} devices on {cpus} shared CPUs cannot take less than {(controller + devices) / cpus:.2f} s "
          f"(all their CPU-s / CPUs), {devices / cpus:.2f} s of it the stand-ins' own work, which devices "
          f"spend on their own CPUs")


if __name__ == "__main__":
    main_bench()
