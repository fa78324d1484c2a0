"""One host for the length of a run: its SSH connection, work dir and worker, and detached batches.

Every remote step of `matrix build` and `deploy` goes through a HostSession: one persistent SSH
master per host (the inventory's connection settings, see transport.py) carries each round trip.
A batch costs one round trip when nothing goes wrong: its inputs go up as a tar stream on stdin,
the command starts detached in a new session (it outlives the connection), the same shell waits
for it (`wait`: signalled, not polled) and sends its outputs and log back as a tar stream on
stdout. A lost connection falls back to polling the detached batch until it ends or the host stays
away for RECONNECT_SECONDS.

Stopping is race-free: `stop()` writes a `stop` marker in the batch dir and then signals the PID
the starter recorded; the starter records its PID and then looks for the marker. Whichever comes
second sees the other's write.
"""
from __future__ import annotations

import shlex
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from fleetbuild.dispatch import shell
from fleetbuild.dispatch.transport import TransferError, Transport
from fleetbuild.errors import FleetbuildError
from fleetbuild.hosts import Host

RECONNECT_SECONDS = 20      # how long a lost host may take to come back before its batch is given up
RUN_DIR_DAYS = 2            # per-run directories on hosts older than this are removed at the next probe
LOST = 255                  # ssh's own exit status: the connection failed or dropped

# exit statuses of the batch script before the batch runs (see _batch_script)
_NO_WORKDIR, _UPLOAD_FAILED, _NO_BATCH_DIR, _STOPPED = 90, 91, 92, 93
# stop the batch whose PID is in $p: its process group (setsid), else the batch shell alone (nohup)
_KILL_BATCH = '{ kill -TERM -- "-$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; }'


@dataclass
class Batch:
    """A command line to run detached in `directory` (relative to the work dir), `upload` files
    (relative to `upload_root`) into the work dir first, and bring `fetch` (names relative to the work
    dir; missing ones are left out) back into `local_dir` afterwards."""
    directory: str
    line: str
    local_dir: Path
    upload_root: Path | None = None
    upload: Sequence[str] = ()
    fetch: Sequence[str] = ()


@dataclass
class HostSession:
    host: Host
    transport: Transport
    workdir: str | None = None
    worker: str | None = None
    facts: dict[str, Any] | None = None
    problem: str | None = None
    down: bool = False
    notify: Callable[[str], None] = field(default=lambda line: None, repr=False)

    # ---- connection -------------------------------------------------------------------------------
    def run(self, remote_command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        return self.transport.run(remote_command, stdin)

    def close(self) -> None:
        self.transport.close()

    def prepare(self, zipapp: Path, zipapp_sha: str) -> None:
        """Create the work dir, drop run directories older than RUN_DIR_DAYS (inputs and workers are
        content-addressed and stay), and put the worker zipapp there under its sha: one round trip.
        Sets `workdir` and `worker`, or `problem` (and `down` when the host cannot be reached)."""
        name = f"fleetbuild-remote-{zipapp_sha[:16]}.pyz"
        tmp = f"worker/tmp-{zipapp_sha[:16]}-{time.time_ns()}"
        command = (f"mkdir -p {shell.path(self.host.workdir)} && cd {shell.path(self.host.workdir)} && "
                   f"{{ find jobs batches -mindepth 1 -maxdepth 1 -mtime +{RUN_DIR_DAYS - 1} -exec rm -rf {{}} + "
                   "2>/dev/null; true; } && "
                   f"mkdir -p {tmp} && tar -C {tmp} -xf - && mv -f {tmp}/{shlex.quote(zipapp.name)} worker/{name} && "
                   f"rm -rf {tmp} && pwd")
        try:
            proc = self.transport.run(command, stdin=_tar_bytes(zipapp.parent, [zipapp.name]))
        except FleetbuildError as err:
            self.problem = str(err)
            return
        if proc.returncode != 0:
            self.problem = f"cannot reach or prepare {self.host.workdir}: " + Transport._stderr(proc)
            self.down = proc.returncode == LOST
            return
        self.workdir = proc.stdout.decode().strip().splitlines()[-1]
        self.worker = f"{self.workdir}/worker/{name}"

    # ---- batches ----------------------------------------------------------------------------------
    def run_batch(self, batch: Batch, stopping: threading.Event) -> str | None:
        """Run `batch` and bring its outputs back. Returns the batch's log (its output, with
        shell.BATCH_DONE at the end when it finished), or None when the host stayed unreachable for
        RECONNECT_SECONDS (the batch may still be running there). Raises TransferError when the
        upload or the download fails. With `stopping` set, returns as soon as the batch is stopped."""
        if stopping.is_set():
            return ""
        if self._ssh_batch(self._batch_script(batch, start=True), batch) == LOST:
            return self._resume(batch, stopping)
        return self._log(batch)

    def stop(self, batch: Batch) -> None:
        """Stop a started (or starting) batch: its process group, the worker in it included."""
        directory = f"{self.workdir}/{batch.directory}"
        pid_file = shell.path(directory + "/batch.pid")
        try:
            self.transport.run(
                f"mkdir -p {shell.path(directory)} && : > {shell.path(directory + '/stop')} && "
                f'p=$(cat {pid_file} 2>/dev/null) && [ -n "$p" ] && {_KILL_BATCH}; exit 0')
            self.notify(f"stopped the running build on {self.host.name}")
        except FleetbuildError as err:
            self.notify(f"could not stop the build on {self.host.name}: {err}")

    def _batch_script(self, batch: Batch, start: bool) -> str:
        workdir = shell.path(self.workdir or self.host.workdir)
        directory = shell.path(batch.directory)
        inner = shlex.quote(f"{batch.line} ; echo {shell.BATCH_DONE}")
        names = " ".join(shlex.quote(n) for n in [*batch.fetch, f"{batch.directory}/batch.log"])
        fetch = (f'cd {workdir} && set -- && for n in {names}; do [ -e "$n" ] && set -- "$@" "$n"; done; '
                 'tar -cf - -T /dev/null "$@"')
        if not start:   # after a lost connection: wait for the detached batch by polling, then fetch
            return (f"cd {workdir}/{directory} || exit {_NO_BATCH_DIR}; pid=$(cat batch.pid 2>/dev/null); "
                    'while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 1; done; ' + fetch)
        upload = (f"tar --skip-old-files -xf - || exit {_UPLOAD_FAILED}; " if batch.upload else "")
        # `trap '' HUP` first: the session's hangup must not kill the background job before setsid.
        return (f"cd {workdir} || exit {_NO_WORKDIR}; {upload}"
                f"mkdir -p {directory} && cd {directory} || exit {_NO_BATCH_DIR}; "
                f"[ -e stop ] && exit {_STOPPED}; trap '' HUP; "
                "{ command -v setsid >/dev/null 2>&1 && L=setsid || L=nohup; }; "
                f"$L sh -c {inner} > batch.log 2>&1 < /dev/null & "
                'p=$!; echo "$p" > batch.pid; '
                f'[ -e stop ] && {_KILL_BATCH}; '
                'wait "$p"; ' + fetch)

    def _ssh_batch(self, script: str, batch: Batch) -> int:
        """Run a batch script: the upload streamed on stdin, the fetched tar extracted as it arrives.
        Returns LOST when the connection dropped, else 0 (raises TransferError otherwise)."""
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(self.transport.argv(script), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errors, start_new_session=True)
            try:
                try:
                    if batch.upload and batch.upload_root is not None:
                        with tarfile.open(fileobj=proc.stdin, mode="w|") as archive:
                            for name in batch.upload:
                                archive.add(str(batch.upload_root / name), arcname=name, recursive=False)
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass                     # the script ended early: its status says why
                extract_error = None
                try:
                    _extract(proc.stdout, batch.local_dir, self.host.name)
                except (tarfile.TarError, EOFError) as err:
                    extract_error = err
                rc = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            errors.seek(0)
            stderr = Transport.stderr_line(errors.read(), rc)
        if rc == LOST:
            return LOST
        if rc == _UPLOAD_FAILED:
            raise TransferError(f"{self.host.name}: upload to {self.workdir} failed: {stderr}")
        if rc == _STOPPED:
            return 0
        if rc != 0 or extract_error is not None:
            raise TransferError(f"{self.host.name}: batch {batch.directory} failed: "
                                f"{stderr if rc != 0 else f'unreadable output ({extract_error})'}")
        return 0

    def _resume(self, batch: Batch, stopping: threading.Event) -> str | None:
        lost_since = time.time()
        self.notify(f"lost the connection to {self.host.name}; reconnecting")
        while not stopping.is_set():
            if time.time() - lost_since > RECONNECT_SECONDS:
                return None
            time.sleep(2.0)
            try:
                # reachable again? (a quick check first: the wait below may block for a long build)
                if self.transport.run("exit 0").returncode != 0:
                    continue
            except FleetbuildError:
                continue
            self.notify(f"reconnected to {self.host.name}; the build went on")
            if self._ssh_batch(self._batch_script(batch, start=False), batch) != LOST:
                return self._log(batch)
            lost_since = time.time()
            self.notify(f"lost the connection to {self.host.name}; reconnecting")
        return ""

    @staticmethod
    def _log(batch: Batch) -> str:
        path = batch.local_dir / batch.directory / "batch.log"
        try:
            return path.read_text("utf-8", "replace")
        except OSError:
            return ""


def _tar_bytes(root: Path, names: Sequence[str]) -> bytes:
    with tempfile.TemporaryFile() as buffer:
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name in names:
                archive.add(str(root / name), arcname=name, recursive=False)
        buffer.seek(0)
        return buffer.read()


def _extract(stream: Any, local_dir: Path, host: str) -> None:
    """Extract a tar stream member by member, refusing anything but files and directories inside
    local_dir."""
    local_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if not (member.isfile() or member.isdir()) or member.name.startswith("/") or \
                    ".." in Path(member.name).parts:
                raise TransferError(f"{host}: refusing unexpected archive member {member.name!r}")
            archive.extract(member, local_dir)


def worker_start_failure(rc: int | None, output: str, python: str) -> str:
    """A one-line reason for a worker (or probe) that did not get to write its result."""
    import signal

    text = output.replace("\r", "")
    if rc is None:
        lines = [line for line in text.splitlines() if line.strip()]
        return f"the worker did not run: {lines[-1][:200] if lines else 'no output'}"
    if rc == 127 or "No such file or directory" in text and python in text:
        return f"{python} not found on the host (set fleetbuild_python)"
    if "SyntaxError" in text or "invalid syntax" in text:
        return f"{python} is too old for the worker (it needs Python 3.6 or newer; set fleetbuild_python)"
    if rc < 0 or rc > 128:
        number = -rc if rc < 0 else rc - 128
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        return f"the worker was killed ({name}) before it finished"
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(shell.STATUS_MARK)]
    return f"the worker did not run with {python}: exit code {rc}: {lines[-1][:200] if lines else ''}"
