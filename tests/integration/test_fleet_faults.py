"""Faults over the real SSH test fleet: Ctrl-C mid-build and a host lost mid-build.

The controller runs as a subprocess (signals), the hosts run the FAKE TensorRT 10 with a slow build
(FAKE_TRT_SLEEP) so there is time to interrupt."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAKE_TRT, FIXTURES, as_at_a_terminal, pyenv_python, require

sys.path.insert(0, str(FIXTURES))
from fleet import FleetHost  # noqa: E402

CONFIG = """
[project]
name = "faults"
[defaults]
precisions = ["fp16", "fp32"]
[models.conv]
onnx = "models/conv_bn_relu.onnx"
[models.pair]
onnx = "models/two_input.onnx"
[matrix]
targets = ["t4"]
[inventory]
path = "inventory.ini"
"""


def start_fleet(project, fleet_factory, fake_cudart, sleep: float):
    python = pyenv_python("3.8")
    require(python is not None, "Python 3.8 (pyenv)", "the machine image's pyenv")
    env = {"FLEETBUILD_CUDART": str(fake_cudart), "PYTHONPATH": str(FAKE_TRT["10"]), "FAKE_CUDA_CC": "7.5",
           "FAKE_TRT_SLEEP": str(sleep)}
    fleet = fleet_factory([FleetHost("t4-a", "t4", "t4", python, env=env),
                           FleetHost("t4-b", "t4", "t4", python, env=env)], first_address=60)
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG)
    return fleet


def controller(project, env) -> subprocess.Popen:
    """`matrix build` as a process group of its own, like a command started at a terminal."""
    return subprocess.Popen([sys.executable, "-m", "fleetbuild", "matrix", "build", "--json", "results.json"],
                            cwd=project.root, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=as_at_a_terminal)


def processes() -> dict[int, str]:
    found = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                pass
    return found


def controller_leftovers(before: dict[int, str]) -> list[str]:
    """ssh clients and masters, ansible-playbook and its workers started since `before` and still alive."""
    return [f"{pid}: {cmd}" for pid, cmd in processes().items()
            if pid not in before and (cmd.startswith(("ssh ", "ssh:")) or "ansible" in cmd)]


def running_status(fleet, host: str | None = None) -> list[Path]:
    hosts = [fleet.hosts[host]] if host else list(fleet.hosts.values())
    found = []
    for h in hosts:
        for path in h.workdir.glob("jobs/*/*/*/*/out/status.json"):
            try:
                if json.loads(path.read_text())["phase"] == "building":
                    found.append(path)
            except (OSError, ValueError, KeyError):
                pass
    return found


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def gone(listing, timeout: float, what: str) -> None:
    """Wait until `listing()` is empty; fail naming what is still there."""
    deadline = time.time() + timeout
    while listing() and time.time() < deadline:
        time.sleep(0.1)
    assert not listing(), f"{what} still running: {listing()}"


def worker_processes(fleet) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "fleetbuild-remote" in cmdline and str(fleet.base) in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def slow_python(path: Path, real: str, step: str, seconds: int) -> str:
    """A host `python` that sleeps before the worker's `step` (probe or build): time to interrupt in."""
    path.write_text(f'#!/bin/sh\ncase " $* " in *" {step} "*) sleep {seconds};; esac\nexec {real} "$@"\n')
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("point", ["importing", "starting", "probing", "building", "building-sigterm"])
def test_interrupt_leaves_nothing_behind(project, fleet_factory, fake_cudart, env, point, tmp_path):
    """A real Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or a SIGTERM at
    several points of a run: exit 130, a clean message, every job accounted for, no process left on
    the controller or the hosts, nothing half-stored."""
    python = pyenv_python("3.8")
    require(python is not None, "Python 3.8 (pyenv)", "the machine image's pyenv")
    host_python = slow_python(tmp_path / "python", python, "probe", 60) if point == "probing" else python
    extra = {"FLEETBUILD_CUDART": str(fake_cudart), "PYTHONPATH": str(FAKE_TRT["10"]), "FAKE_CUDA_CC": "7.5",
             "FAKE_TRT_SLEEP": "60"}
    fleet = fleet_factory([FleetHost("t4-a", "t4", "t4", host_python, env=extra),
                           FleetHost("t4-b", "t4", "t4", host_python, env=extra)], first_address=60)
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG)
    before = processes()
    proc = controller(project, env)
    if point in ("importing", "starting"):
        time.sleep(0.1 if point == "importing" else 0.5)      # Python importing fleetbuild; planning
    elif point == "probing":
        wait_for(lambda: [p for p in worker_processes(fleet) if " probe" in p], 60, "the probe on the hosts")
    else:
        wait_for(lambda: len(running_status(fleet)) >= 2, 60, "two running builds")
    started = time.time()
    if point == "building-sigterm":
        proc.send_signal(signal.SIGTERM)       # a service manager or CI cancelling the run
    else:
        os.killpg(proc.pid, signal.SIGINT)     # Ctrl-C: the terminal signals the whole foreground group
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert time.time() - started < 30, err     # not waiting for the 60 s probes or builds
    assert "lost the connection" not in err and "retrying" not in err, err    # no connection died under a job
    assert "Traceback" not in err and "fleetbuild: interrupted" in err or "interrupted" in out, err
    results_file = project.root / "results.json"
    if point not in ("importing", "starting") or results_file.exists():
        results = json.loads(results_file.read_text())["results"]
        assert len(results) == 4 and {r["kind"] for r in results} == {"interrupted"}, err
        if point == "probing":
            assert {r["reason"] for r in results} == {"not started: interrupted"}
    gone(lambda: controller_leftovers(before), 15, "the controller's ssh and ansible processes")
    gone(lambda: worker_processes(fleet), 15, "the remote workers")
    blobs = project.root / "artifacts" / "blobs"
    assert not blobs.exists() or not any(blobs.rglob("*"))                 # nothing half-stored


def test_lost_host_mid_build_moves_the_job(project, fleet_factory, fake_cudart, env):
    fleet = start_fleet(project, fleet_factory, fake_cudart, sleep=4)
    proc = controller(project, env)
    wait_for(lambda: running_status(fleet, "t4-a"), 60, "a build on t4-a")
    kill_host(fleet, "t4-a")
    out, err = proc.communicate(timeout=180)
    results = {r["job_id"]: r for r in json.loads((project.root / "results.json").read_text())["results"]}
    assert proc.returncode == 0, err + out
    assert all(r["status"] == "built" for r in results.values())
    moved = [r for r in results.values() if r["attempts"] == 2]
    assert moved and all(r["host"] == "t4-b" for r in moved)
    assert "retrying" in err and "elsewhere: t4-a" in err
    wait_for(lambda: not worker_processes(fleet), 15, "the lost host's worker to end (SIGHUP)")


def kill_host(fleet, name: str) -> None:
    """Lose a host for real: its sshd listener and every session process under it."""
    root = fleet.hosts[name].process.pid
    children: dict[int, list[int]] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(pid))
    doomed, stack = [], [root]
    while stack:
        pid = stack.pop()
        doomed.append(pid)
        stack.extend(children.get(pid, []))
    for pid in doomed:
        if "sshd" in Path(f"/proc/{pid}/comm").read_text() if Path(f"/proc/{pid}/comm").exists() else False:
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("case", ["python2", "missing-python", "worker-killed"])
def test_worker_that_cannot_finish_gives_a_clear_reason(project, fleet_factory, fake_cudart, env, cli, case):
    python = {"python2": pyenv_python("2.7"), "missing-python": "/opt/nowhere/bin/python3",
              "worker-killed": pyenv_python("3.8")}[case]
    require(python is not None, "pyenv Python 2.7 and 3.8", "the machine image's pyenv")
    extra = {"FLEETBUILD_CUDART": str(fake_cudart), "PYTHONPATH": str(FAKE_TRT["10"]), "FAKE_CUDA_CC": "7.5"}
    if case == "worker-killed":
        extra["FAKE_TRT_KILL"] = "1"
    fleet = fleet_factory([FleetHost("t4-x", "t4", "t4", python, env=extra)], first_address=70)
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG.replace('precisions = ["fp16", "fp32"]', 'precisions = ["fp16"]')
                  .replace('[models.pair]\nonnx = "models/two_input.onnx"\n', ''))
    result = cli("matrix", "build", "--json")
    data = json.loads(result.out)
    assert result.code == 1
    reason = data["results"][0]["reason"]
    if case == "worker-killed":
        assert data["results"][0]["kind"] == "no-host"      # retried, and no other host was left
        assert reason == "no host left to build it (t4-x: the worker was killed (SIGKILL) before it finished)"
    else:
        # the probe cannot run either, so the host never joins the pool
        expected = "too old for the worker" if case == "python2" else "not found on the host"
        assert reason.startswith("no host can build it (t4-x: ") and expected in reason, reason


def test_connection_lost_and_back_resumes_the_same_build(project, fleet_factory, fake_cudart, env):
    """The worker runs detached on the host: losing SSH for a few seconds does not lose the build."""
    fleet = start_fleet(project, fleet_factory, fake_cudart, sleep=8)
    project.write(CONFIG.replace('precisions = ["fp16", "fp32"]', 'precisions = ["fp16"]')
                  .replace('[models.pair]\nonnx = "models/two_input.onnx"\n', ''))
    proc = controller(project, env)
    running = wait_for(lambda: running_status(fleet), 60, "the build to start")
    host = "t4-a" if str(fleet.hosts["t4-a"].workdir) in str(running[0]) else "t4-b"
    kill_host(fleet, host)
    time.sleep(2)
    fleet.start_host(fleet.hosts[host])                            # same address and port: the host is back
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err + out
    result = json.loads((project.root / "results.json").read_text())["results"][0]
    assert (result["status"], result["host"], result["attempts"]) == ("built", host, 1), err
    assert f"lost the connection to {host}; reconnecting" in err and f"reconnected to {host}" in err
    logs = list(fleet.hosts[host].workdir.glob("batches/*/batch.log"))
    assert len(logs) == 1 and "fleetbuild-batch-done" in logs[0].read_text()   # built once, not twice
