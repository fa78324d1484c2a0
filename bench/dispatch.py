#!/usr/bin/env python3
"""Orchestration overhead of `fleetbuild matrix build` over real SSH, vs one ansible-playbook per job.

4 loopback hosts (real sshd each, the test fleet), 40 jobs whose worker time is fixed (the FAKE
TensorRT 10 of tests/fixtures sleeps --build-seconds in its builder). Overhead per job =
(makespan - ideal schedule of the measured worker times on 4 hosts) / jobs, where the ideal is the
longest-processing-time schedule of the workers' own wall times. The baseline runs the same staged
jobs as one plain `ansible-playbook` (raw task) per job, 4 hosts in parallel; then the same matrix
through Ansible's connection plugin API (a FAKE local-like plugin). Goal: <= 0.2 s/job
and below the baseline in the same run.
Needs root (sshd) and the machine image's pyenv Python 3.8.

    .venv/bin/python bench/dispatch.py [--jobs 40] [--hosts 4] [--build-seconds 1.0]
"""
from __future__ import annotations

import argparse
import heapq
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fixtures"), str(ROOT / "examples" / "quickstart")]

import onnx  # noqa: E402
from fleet import Fleet, FleetHost  # noqa: E402
from make_models import conv_bn_relu  # noqa: E402

from fleetbuild.cli import main  # noqa: E402
from fleetbuild.build.dispatch.shell import command  # noqa: E402


def ideal_makespan(durations: list[float], hosts: int) -> float:
    loads = [0.0] * hosts
    for duration in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + duration)
    return max(loads)


def pyenv(minor: str) -> str:
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
    return sorted(Path(root, "versions").glob(f"{minor}.*/bin/python"))[0].as_posix()


def compile_fake_cudart(directory: Path) -> Path:
    out = directory / "libcudart.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(out), str(ROOT / "tests/fixtures/fake_cuda/fake_cudart.c")],
                   check=True)
    return out


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--build-seconds", type=float, default=1.0)
    args = parser.parse_args()
    import _needs

    _needs.root("it starts sshd processes for the loopback test fleet")
    _needs.command("sshd", "make test-deps (apt-get install openssh-server)", also=("/usr/sbin/sshd",))
    _needs.command("cc", "apt-get install gcc (the FAKE libcudart is compiled)")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cudart = compile_fake_cudart(base)
        env = {"FLEETBUILD_CUDART": str(cudart), "PYTHONPATH": str(ROOT / "tests/fixtures/fake_tensorrt/trt10"),
               "FAKE_CUDA_CC": "7.5", "FAKE_TRT_SLEEP": str(args.build_seconds)}
        python = pyenv("3.8")
        fleet = Fleet(base / "fleet", [FleetHost(f"t4-{i}", "t4", "t4", python, env=env)
                                       for i in range(args.hosts)], first_address=100).start()
        try:
            project = base / "project"
            (project / "models").mkdir(parents=True)
            models = args.jobs // 2
            lines = ['[project]\nname = "bench"\n[defaults]\nprecisions = ["fp32", "fp16"]\n']
            for index in range(models):
                onnx.save(conv_bn_relu(channels=4 + index), str(project / "models" / f"m{index}.onnx"))
                lines.append(f'[models.m{index}]\nonnx = "models/m{index}.onnx"\n')
            lines.append('[matrix]\ntargets = ["t4"]\n[inventory]\npath = "inventory.ini"\n')
            (project / "fleet.toml").write_text("".join(lines))
            inventory = fleet.inventory(project / "inventory.ini")
            cache = base / "cache"
            cli_env = {**os.environ, "FLEETBUILD_CACHE_DIR": str(cache), "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": "1"}
            out = io.StringIO()
            os.chdir(project)
            started = time.perf_counter()
            code = main(["matrix", "build", "--json"], env=cli_env, stdout=out, stderr=io.StringIO())
            makespan = time.perf_counter() - started
            results = json.loads(out.getvalue())["results"]
            assert code == 0 and all(r["status"] == "built" for r in results), results
            worker = [r["worker_seconds"] for r in results]
            ideal = ideal_makespan(worker, args.hosts)
            overhead = (makespan - ideal) / len(results)
            baseline_span, baseline_worker = baseline(fleet, inventory, cache, len(results))
            baseline_overhead = (baseline_span - ideal_makespan(baseline_worker, args.hosts)) / len(results)
            print(f"jobs: {len(results)} on {args.hosts} loopback hosts over real SSH; worker time "
                  f"{min(worker):.2f}-{max(worker):.2f} s (fake builder sleeps {args.build_seconds} s)")
            print(f"fleetbuild matrix build: makespan {makespan:.1f} s (includes probe and staging), ideal "
                  f"{ideal:.1f} s -> overhead {overhead:.2f} s/job  goal <= 0.2: {'met' if overhead <= 0.2 else 'MISSED'}")
            print(f"baseline, ansible-playbook per job: makespan {baseline_span:.1f} s -> overhead "
                  f"{baseline_overhead:.2f} s/job; ratio fleetbuild / baseline {overhead / baseline_overhead:.2f}  goal < 1: "
                  f"{'met' if overhead < baseline_overhead else 'MISSED'}")
            plugin_span, plugin_results = plugin_transport(inventory, cli_env)
            plugin_overhead = (plugin_span - ideal_makespan([r["worker_seconds"] for r in plugin_results],
                                                            args.hosts)) / len(plugin_results)
            print(f"the same jobs through Ansible's connection plugin API (a FAKE plugin: Ansible's local under "
                  f"another name, so no ssh in it): makespan {plugin_span:.1f} s -> overhead {plugin_overhead:.2f} "
                  f"s/job, {plugin_overhead - overhead:+.2f} s/job against the fast path")
        finally:
            fleet.stop()


def plugin_transport(inventory: Path, cli_env: dict[str, str]) -> tuple[float, list[dict]]:
    """The same matrix again (--rebuild), every host behind the FAKE `shellbox` connection plugin
    (tests/fixtures/connection_plugins): fleetbuild drives it through exec_command, put_file and
    fetch_file, as it would a docker, podman, lxd or kubectl host."""
    import re

    text = inventory.read_text()
    text = re.sub(r"^(t4-\d+) ", r"\1 ansible_connection=shellbox ", text, flags=re.M)
    plugin_inventory = inventory.with_name("inventory-plugin.ini")
    plugin_inventory.write_text(text)
    env = {**cli_env, "ANSIBLE_CONNECTION_PLUGINS": str(ROOT / "tests" / "fixtures" / "connection_plugins")}
    out = io.StringIO()
    started = time.perf_counter()
    code = main(["matrix", "build", "-i", str(plugin_inventory), "--rebuild", "--json"], env=env, stdout=out,
                stderr=io.StringIO())
    span = time.perf_counter() - started
    results = json.loads(out.getvalue())["results"]
    assert code == 0 and all(r["status"] == "built" for r in results), results
    return span, results


def baseline(fleet: Fleet, inventory: Path, cache: Path, jobs: int) -> tuple[float, list[float]]:
    """The jobs fleetbuild staged on each host, run again: one `ansible-playbook` process per job."""
    playbook = cache / "baseline.yml"
    playbook.write_text('- hosts: "{{ h }}"\n  gather_facts: false\n  tasks:\n    - raw: "{{ c }}"\n')
    work: dict[str, list[Path]] = {}
    for name, host in fleet.hosts.items():
        work[name] = sorted(host.workdir.glob("jobs/*/*/*/*/spec.json"))
    worker = next(Path(h.workdir).glob("worker/fleetbuild-remote-*") for h in fleet.hosts.values())
    worker_name = next(worker).name
    queue = [(name, spec) for name, specs in work.items() for spec in specs]
    sockets = Path(tempfile.mkdtemp(prefix="bench-cp-"))
    times: list[float] = []
    lock = threading.Lock()

    def run_host(name: str) -> None:
        host = fleet.hosts[name]
        for host_name, spec in [q for q in queue if q[0] == name]:
            out = spec.parent / "baseline-out"
            cmd = command([host.python, str(host.workdir / "worker" / worker_name), "build", "--spec", str(spec),
                           "--out", str(out)], env={**host.env, "FLEETBUILD_PROBE_ROOT": str(host.root)})
            subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                            str(playbook), "-e", json.dumps({"h": host_name, "c": cmd})],
                           check=True, capture_output=True, env={**os.environ, "ANSIBLE_PIPELINING": "True",
                                                                 "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=300s",
                                                                 "ANSIBLE_SSH_CONTROL_PATH_DIR": str(sockets)})
            with lock:
                times.append(json.loads((out / "result.json").read_text())["seconds"])

    started = time.perf_counter()
    threads = [threading.Thread(target=run_host, args=(name,)) for name in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for socket in sockets.iterdir():           # the baseline's own SSH masters: leave nothing running
        subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "baseline"], capture_output=True)
    return elapsed, times


if __name__ == "__main__":
    main_bench()
