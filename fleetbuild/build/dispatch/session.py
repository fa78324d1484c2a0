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

import json
import shlex
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fleetbuild.build.dispatch import shell
from fleetbuild.build.dispatch.transport import TransferError, Transport
from fleetbuild.errors import FleetbuildError
from fleetbuild.build.hosts import Host

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.build.bundle import WorkerArchive
    from fleetbuild.build.dispatch.ansible import RawResult

RECONNECT_SECONDS = 20      # how long a lost host may take to come back before its batch is given up
RUN_DIR_DAYS = 2            # per-run directories on hosts older than this are removed at the next probe
INPUT_MINUTES = 7 * 24 * 60  # inputs no batch has used for this long are removed at the next probe
LOST = 255                  # ssh's own exit status: the connection failed or dropped
NEVER_CONNECTED = ("Permission denied", "Host key verification failed", "ssh: Could not resolve hostname",
                   "Too many authentication failures", "Load key")        # ssh's words when it never logged in

# exit statuses of the probe command and of the batch script before the batch runs
_NO_WORKDIR, _UPLOAD_FAILED, _NO_BATCH_DIR, _STOPPED, _WORKER_DAMAGED = 90, 91, 92, 93, 94
WORKDIR_MARK = "fleetbuild-workdir:"
_UPLOAD_MARK = "fleetbuild-send:"
# Unpacks the worker (base64 on stdin) into worker/<name> after checking its sha256; a concurrent
# install of the same worker wins or loses the rename harmlessly. Python 2.7 and 3.6+ (a host whose
# Python is too old still gets the worker, and the probe then says what is wrong).
_INSTALL_WORKER = f"""import base64, hashlib, io, os, shutil, sys, zipfile
d, name, sha = sys.argv[1:4]
data = base64.b64decode(sys.stdin.read())
if hashlib.sha256(data).hexdigest() != sha:
    sys.stderr.write("the worker arrived damaged (sha256 mismatch)\\n")
    sys.exit({_WORKER_DAMAGED})
t = os.path.join(d, ".tmp-%s-%d" % (name, os.getpid()))
try:
    zipfile.ZipFile(io.BytesIO(data)).extractall(t)
    os.rename(t, os.path.join(d, name))
except (OSError, IOError) as e:
    shutil.rmtree(t, True)
    if not os.path.isdir(os.path.join(d, name)):
        sys.stderr.write("%s\\n" % e)
        sys.exit({_WORKER_DAMAGED})
"""
# stop the batch whose PID is in $p: its process group (setsid), else the batch shell alone (nohup)
_KILL_BATCH = '{ kill -TERM -- "-$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; }'


@dataclass
class Batch:
    """A command line to run detached in `directory` (relative to the work dir), with files (relative
    to `upload_root`) put into the work dir first, and `fetch` (names relative to the work dir;
    missing ones are left out) brought back into `local_dir` afterwards. `upload` files are always
    sent and replace what the host has; `by_content` files have names that fix their content (a
    sha256 in the path) and are sent only when the host lacks them. Either kind lands whole or not
    at all: it is unpacked under the batch directory, then renamed into place."""
    directory: str
    line: str
    local_dir: Path
    upload_root: Path | None = None
    upload: Sequence[str] = ()
    by_content: Sequence[str] = ()
    fetch: Sequence[str] = ()
    keep_alive: bool = False    # touch the by_content files the host has: a prune by age spares them


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
    sent_bytes: int = 0         # file bytes uploaded by this session's batches

    # ---- connection -------------------------------------------------------------------------------
    def run(self, remote_command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        return self.transport.run(remote_command, stdin)

    def close(self) -> None:
        self.transport.close()

    def probe_command(self, worker: "WorkerArchive") -> str:
        """The command the probe play runs here: create the work dir, drop run directories older than
        RUN_DIR_DAYS and inputs no batch has used for INPUT_MINUTES (a build batch touches the inputs
        it finds there), install the worker where it is missing (it travels inside the command,
        base64, as Ansible ships its modules; unpacked into a directory of its own so the host's
        Python caches its bytecode), print the work dir, probe."""
        python = self.host.python
        install = shell.words([python, "-c", _INSTALL_WORKER, "worker", worker.name, worker.sha256])
        workdir = shell.path(self.host.workdir)
        return (f"mkdir -p {workdir} && cd {workdir} || exit {_NO_WORKDIR}; "
                f"{{ find jobs batches -mindepth 1 -maxdepth 1 -mtime +{RUN_DIR_DAYS - 1} -exec rm -rf {{}} + "
                f"2>/dev/null; {_prune_inputs(INPUT_MINUTES)} 2>/dev/null; true; }}; "
                f"[ -d worker/{worker.name} ] || {{ mkdir -p worker && printf %s {worker.base64} | {install}; }} "
                "|| exit $?; "
                f'echo "{WORKDIR_MARK}$(pwd)"; '
                + shell.command([python, f"worker/{worker.name}", "probe"], env=self.host.env))

    def take_probe(self, result: "RawResult", worker: "WorkerArchive") -> None:
        """Read the probe play's result for this host: sets `workdir`, `worker` and `facts`, or
        `problem` (and `down` when the host could not be reached)."""
        text = result.stdout.replace("\r", "")
        _, marked, after = text.partition(WORKDIR_MARK)
        if result.unreachable:
            self.problem, self.down = result.reason(), True
        elif result.rc == _NO_WORKDIR:
            self.problem = f"cannot create or enter the work dir {self.host.workdir}: {_reason(result)}"
        elif result.rc == _WORKER_DAMAGED:
            self.problem = f"cannot install the worker in {self.host.workdir}/worker: {_reason(result)}"
        elif not marked:
            self.problem = worker_start_failure(result.rc, result.stdout + result.stderr, self.host.python)
        else:
            workdir, _, output = after.partition("\n")
            self.workdir = workdir.strip()
            self.worker = f"{self.workdir}/worker/{worker.name}"
            facts = _json_object(output) if result.ok else None
            if facts is None:
                self.problem = ("probe printed no JSON" if result.ok else
                                worker_start_failure(result.rc, output + result.stderr, self.host.python))
            else:
                self.facts = facts

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

    def stop(self, batch: Batch, what: str = "build") -> None:
        """Stop a started (or starting) batch: its process group, the worker in it included. `what`
        the batch does, for the notice."""
        directory = f"{self.workdir}/{batch.directory}"
        pid_file = shell.path(directory + "/batch.pid")
        try:
            self.transport.run(
                f"mkdir -p {shell.path(directory)} && : > {shell.path(directory + '/stop')} && "
                f'p=$(cat {pid_file} 2>/dev/null) && [ -n "$p" ] && {_KILL_BATCH}; exit 0')
            self.notify(f"stopped the running {what} on {self.host.name}")
        except FleetbuildError as err:
            self.notify(f"could not stop the {what} on {self.host.name}: {err}")

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
        upload = ""
        if batch.upload or batch.by_content:
            # the names the host lacks, then the mark; then the tar of what the controller sends,
            # unpacked under incoming/ and renamed into place file by file
            incoming = shlex.quote(f"{batch.directory}/incoming")
            have = 'touch -c -- "$n"' if batch.keep_alive else ":"
            upload = (f"mkdir -p {incoming} || exit {_UPLOAD_FAILED}; "
                      'while IFS= read -r n && [ -n "$n" ]; do if [ -e "$n" ]; then ' + have + "; "
                      'else printf \'%s\\n\' "$n"; fi; done; '
                      f"echo {_UPLOAD_MARK}; tar -C {incoming} -xf - || exit {_UPLOAD_FAILED}; "
                      f"( cd {incoming} && find . -type f ) | while IFS= read -r f; do f=${{f#./}}; "
                      'case $f in */*) mkdir -p "${f%/*}" || exit 1;; esac; '
                      f'mv -f {incoming}/"$f" "$f" || exit 1; done || exit {_UPLOAD_FAILED}; rm -rf {incoming}; ')
        # `trap '' HUP` first: the session's hangup must not kill the background job before setsid.
        return (f"cd {workdir} || exit {_NO_WORKDIR}; mkdir -p {directory} || exit {_NO_BATCH_DIR}; {upload}"
                f"cd {directory} || exit {_NO_BATCH_DIR}; "
                f"[ -e stop ] && exit {_STOPPED}; trap '' HUP; "
                "{ command -v setsid >/dev/null 2>&1 && L=setsid || L=nohup; }; "
                f"$L sh -c {inner} > batch.log 2>&1 < /dev/null & "
                'p=$!; echo "$p" > batch.pid; '
                f'[ -e stop ] && {_KILL_BATCH}; '
                'wait "$p"; ' + fetch)

    def _ssh_batch(self, script: str, batch: Batch, upload: bool = True) -> int:
        """Run a batch script: the upload (when `upload`) streamed on stdin, the fetched tar extracted
        as it arrives. Returns LOST when the connection dropped, else 0 (raises TransferError otherwise)."""
        if not self.transport.streams:
            return self._files_batch(script, batch, upload)
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(self.transport.argv(script), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errors, start_new_session=True)
            try:
                try:
                    if upload and (batch.upload or batch.by_content):
                        self._upload(proc, batch)
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
        if rc == LOST and any(words in stderr for words in NEVER_CONNECTED):   # no drop: it never logged in
            raise TransferError(f"{self.host.name}: cannot connect ({stderr}); check the host's connection "
                                "settings with `fleetbuild hosts list` and `ansible -m ping`")
        if rc == LOST:
            return LOST
        return self._outcome(rc, stderr, extract_error, batch)

    def _files_batch(self, script: str, batch: Batch, upload: bool) -> int:
        """_ssh_batch through a transport that cannot stream (an Ansible connection plugin): stdin and
        stdout cross as whole files. The host cannot be asked first which inputs it lacks, so every
        input is sent (it replaces the same content)."""
        with tempfile.TemporaryDirectory(prefix="fleetbuild-batch-") as tmp:
            stdin, stdout = Path(tmp) / "stdin", Path(tmp) / "stdout"
            sending = upload and bool(batch.upload or batch.by_content)
            with open(stdin, "wb") as handle:
                if sending:
                    names = list(batch.by_content)
                    handle.write("".join(name + "\n" for name in names).encode() + b"\n")
                    self._tar(handle, [*batch.upload, *names], batch)
            proc = self.transport.run_files(script, stdin if sending else None, stdout,
                                            scratch=self.workdir or self.host.workdir)
            extract_error = None
            with open(stdout, "rb") as output:
                if sending:
                    for raw in iter(output.readline, b""):      # the names it lacked, then the mark
                        if raw.rstrip(b"\n") == _UPLOAD_MARK.encode():
                            break
                try:
                    _extract(output, batch.local_dir, self.host.name)
                except (tarfile.TarError, EOFError) as err:
                    extract_error = err
        stderr = Transport.stderr_line(proc.stderr or b"", proc.returncode)
        return self._outcome(proc.returncode, stderr, extract_error, batch)

    def _outcome(self, rc: int, stderr: str, extract_error: BaseException | None, batch: Batch) -> int:
        if rc == _UPLOAD_FAILED:
            raise TransferError(f"{self.host.name}: upload to {self.workdir} failed: {stderr}")
        if rc == _STOPPED:
            return 0
        if rc != 0 or extract_error is not None:
            raise TransferError(f"{self.host.name}: batch {batch.directory} failed: "
                                f"{stderr if rc != 0 else f'unreadable output ({extract_error})'}")
        return 0

    def _upload(self, proc: subprocess.Popen, batch: Batch) -> None:
        """Ask which `by_content` files the host lacks, then send those and every `upload` file."""
        names = list(batch.by_content)
        bad = [name for name in [*names, *batch.upload] if "\n" in name]
        if bad:
            raise TransferError(f"{self.host.name}: cannot send a file whose name has a newline: {bad[0]!r}")
        proc.stdin.write("".join(name + "\n" for name in names).encode() + b"\n")
        proc.stdin.flush()
        wanted, lacking = set(names), []
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line == _UPLOAD_MARK:
                break
            if line in wanted:                  # anything else is a login banner
                lacking.append(line)
        else:
            return                              # the script ended before asking: its status says why
        self._tar(proc.stdin, [*batch.upload, *lacking], batch)

    def _tar(self, stream: Any, names: list[str], batch: Batch) -> None:
        with tarfile.open(fileobj=stream, mode="w|") as archive:
            for name in dict.fromkeys(names):
                path = batch.upload_root / name if batch.upload_root else Path(name)
                archive.add(str(path), arcname=name, recursive=False)
                self.sent_bytes += path.stat().st_size

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
            if self._ssh_batch(self._batch_script(batch, start=False), batch, upload=False) != LOST:
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


def _prune_inputs(minutes: int) -> str:
    """Remove the inputs (content-addressed) whose inode no batch has changed for `minutes` (ctime:
    an upload, a rename and `touch` set it; tar restores mtime, not ctime), then emptied directories.
    -cmin, -empty and -delete are GNU find's (and the BSDs'); where find lacks them nothing is removed."""
    return (f"{{ find inputs -type f -cmin +{minutes} -exec rm -f {{}} + ; "
            "find inputs -mindepth 1 -type d -empty -delete; }")


def _reason(result: "RawResult") -> str:
    return Transport.stderr_line((result.stderr + "\n" + result.stdout).encode(), result.rc)


def _json_object(text: str) -> dict | None:
    start = text.find("{")
    try:
        value = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


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
    if "needs Python 3.6 or newer" in text or "SyntaxError" in text or "invalid syntax" in text:
        return f"{python} is too old for the worker (it needs Python 3.6 or newer; set fleetbuild_python)"
    if rc < 0 or rc > 128:
        number = -rc if rc < 0 else rc - 128
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        return f"the worker was killed ({name}) before it finished"
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(shell.STATUS_MARK)]
    return f"the worker did not run with {python}: exit code {rc}: {lines[-1][:200] if lines else ''}"
