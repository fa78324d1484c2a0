"""Batch uploads through a real shell and tar (a local host: the same script ssh would run): files
whose names fix their content cross once per host, the others every time, and nothing half-sent
ever sits under its final name."""
from __future__ import annotations

import io
import subprocess
import tarfile
import threading
from pathlib import Path

from fleetbuild.build.dispatch.session import _UPLOAD_FAILED, Batch, HostSession
from fleetbuild.build.dispatch.transport import Transport
from fleetbuild.build.hosts import Host

MODEL = "inputs/0f1e/it's a model.onnx"          # a hostile name: quotes and spaces stay data


def session(tmp_path: Path) -> HostSession:
    host = Host("local-host", (), "local", "localhost", workdir=str(tmp_path / "host work"))
    state = HostSession(host, Transport(host, tmp_path))
    state.workdir = host.workdir
    Path(host.workdir).mkdir()
    return state


def batch(tmp_path: Path, number: int) -> Batch:
    return Batch(f"batches/run-{number}", "cat spec-*.json > seen.txt", tmp_path / "fetched",
                 upload_root=tmp_path / "stage", upload=[f"batches/run-{number}/spec-{number}.json"],
                 by_content=[MODEL], fetch=[f"batches/run-{number}/seen.txt"])


def stage(tmp_path: Path, number: int, model: bytes = b"onnx" * 1000) -> None:
    (tmp_path / "stage" / "inputs" / "0f1e").mkdir(parents=True, exist_ok=True)
    (tmp_path / "stage" / MODEL).write_bytes(model)
    spec = tmp_path / "stage" / "batches" / f"run-{number}" / f"spec-{number}.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(f'{{"run": {number}}}')


def test_by_content_files_cross_once_per_host(tmp_path):
    state = session(tmp_path)
    stage(tmp_path, 1)
    assert state.run_batch(batch(tmp_path, 1), threading.Event()).rstrip().endswith("fleetbuild-batch-done")
    on_host = Path(state.workdir) / MODEL
    assert on_host.read_bytes() == b"onnx" * 1000 and state.sent_bytes == 4000 + len('{"run": 1}')
    assert (tmp_path / "fetched" / "batches" / "run-1" / "seen.txt").read_text() == '{"run": 1}'
    stage(tmp_path, 2)
    state.run_batch(batch(tmp_path, 2), threading.Event())
    assert state.sent_bytes == 4000 + 2 * len('{"run": 1}')          # the second batch sent its spec only
    assert (tmp_path / "fetched" / "batches" / "run-2" / "seen.txt").read_text() == '{"run": 2}'
    assert not any(p.name == "incoming" for p in Path(state.workdir).rglob("*"))


def test_a_cut_upload_leaves_nothing_under_its_final_name(tmp_path):
    state = session(tmp_path)
    stage(tmp_path, 1, model=b"x" * 100_000)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(str(tmp_path / "stage" / MODEL), arcname=MODEL)
    cut = buffer.getvalue()[:60_000]                  # the connection dropped mid-file
    script = state._batch_script(batch(tmp_path, 1), start=True)
    proc = subprocess.run(["sh", "-c", script], input=(MODEL + "\n\n").encode() + cut, capture_output=True)
    assert proc.returncode == _UPLOAD_FAILED
    assert proc.stdout.decode().splitlines() == [MODEL, "fleetbuild-send:"]      # it asked for the model
    assert not (Path(state.workdir) / MODEL).exists()
    state.run_batch(batch(tmp_path, 1), threading.Event())                        # the next batch sends it whole
    assert (Path(state.workdir) / MODEL).read_bytes() == b"x" * 100_000


def test_a_build_batch_keeps_the_inputs_it_finds_alive_and_a_deploy_leaves_them_be(tmp_path):
    """A batch with keep_alive (builds) refreshes the ctime of the inputs the host already has, so the
    probe's prune by age spares what is in use; without it (deploys) nothing is touched: an installed
    engine hard-links the device's copy, and a server watching file times (Triton's poll mode) might
    reload it."""
    import time
    from dataclasses import replace

    state = session(tmp_path)
    stage(tmp_path, 1)
    state.run_batch(replace(batch(tmp_path, 1), keep_alive=True), threading.Event())
    on_host = Path(state.workdir) / MODEL
    first = on_host.stat()
    time.sleep(1.1)
    stage(tmp_path, 2)
    state.run_batch(batch(tmp_path, 2), threading.Event())                   # a deploy's batch
    assert on_host.stat().st_ctime_ns == first.st_ctime_ns
    stage(tmp_path, 3)
    state.run_batch(replace(batch(tmp_path, 3), keep_alive=True), threading.Event())
    assert on_host.stat().st_ctime_ns > first.st_ctime_ns
    assert on_host.read_bytes() == b"onnx" * 1000                           # touched, not sent again
    assert state.sent_bytes == 4000 + 3 * len('{"run": 1}')


def test_the_probe_prunes_inputs_and_keeps_the_rest(tmp_path, monkeypatch):
    """The probe command removes inputs unused for INPUT_MINUTES (0 here: all of them) and the
    directories they leave empty; run directories of today, the worker and the work dir stay."""
    from fleetbuild.build.bundle import WorkerArchive
    from fleetbuild.build.dispatch import session as session_module

    state = session(tmp_path)
    work = Path(state.workdir)
    for name in (MODEL, "inputs/calibration/ab.npy", "jobs/det/t4/fp16/spec.json", "batches/run-1/batch.log"):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text("x")
    monkeypatch.setattr(session_module, "INPUT_MINUTES", 0)
    worker = WorkerArchive.build()
    proc = subprocess.run(["sh", "-c", state.probe_command(worker)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "fleetbuild-workdir:" in proc.stdout
    assert [p for p in (work / "inputs").rglob("*")] == []
    assert (work / "jobs/det/t4/fp16/spec.json").exists() and (work / "batches/run-1/batch.log").exists()
    assert (work / "worker" / worker.name).is_dir()
