"""Files to and from hosts without Python modules on the host: tar streamed over ssh (or run
locally for ansible_connection=local), using the inventory's own connection settings. Existing
files on the host are kept (--skip-old-files), so content-addressed inputs cross once per host."""
from __future__ import annotations

import shlex
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

from fleetbuild.dispatch import shell
from fleetbuild.errors import EnvironmentProblem
from fleetbuild.hosts import Host

SSH_NOISE = ("Warning: Permanently added", "Shared connection to")


class TransferError(EnvironmentProblem):
    pass


class Transport:
    def __init__(self, host: Host, control_dir: Path, timeout: int = 600) -> None:
        self.host, self.control_dir, self.timeout = host, control_dir, timeout

    def ssh_argv(self) -> list[str]:
        host = self.host
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o",
                f"ControlPath={self.control_dir}/%C", "-o", "ControlPersist=300s"]
        if host.port:
            argv += ["-p", str(host.port)]
        if host.key_file:
            argv += ["-i", host.key_file]
        argv += shlex.split(host.ssh_args)
        argv.append(f"{host.user}@{host.address}" if host.user else host.address)
        return argv

    def _argv(self, remote_command: str) -> list[str]:
        if self.host.local:
            return ["sh", "-c", remote_command]
        return self.ssh_argv() + ["--", remote_command]

    def run(self, remote_command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self._argv(remote_command), input=stdin, capture_output=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise TransferError(f"{self.host.name}: timed out after {self.timeout} s") from None

    def put(self, local_root: Path, files: Sequence[str], remote_dir: str) -> None:
        """Copy `files` (paths relative to local_root) into remote_dir, keeping files already there."""
        with tempfile.TemporaryFile() as buffer:
            with tarfile.open(fileobj=buffer, mode="w") as archive:
                for name in files:
                    archive.add(str(local_root / name), arcname=name, recursive=False)
            buffer.seek(0)
            data = buffer.read()
        command = (f"mkdir -p {shell.path(remote_dir)} && tar --skip-old-files -C {shell.path(remote_dir)} "
                   "-xf -")
        proc = self.run(command, stdin=data)
        if proc.returncode != 0:
            raise TransferError(f"{self.host.name}: upload to {remote_dir} failed: {self._stderr(proc)}")

    def get(self, remote_dir: str, names: Sequence[str], local_dir: Path, missing_ok: bool = False) -> None:
        """Copy files or directories `names` (relative to remote_dir) into local_dir. With
        `missing_ok`, names that do not exist on the host are left out instead of failing."""
        quoted = " ".join(shlex.quote(n) for n in names)
        if missing_ok:
            command = (f"cd {shell.path(remote_dir)} && set -- && for n in {quoted}; do [ -e \"$n\" ] && "
                       "set -- \"$@\" \"$n\"; done; tar -cf - -T /dev/null \"$@\"")
        else:
            command = f"tar -C {shell.path(remote_dir)} -cf - " + quoted
        proc = self.run(command)
        if proc.returncode != 0:
            raise TransferError(f"{self.host.name}: download from {remote_dir} failed: {self._stderr(proc)}")
        local_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as buffer:
            buffer.write(proc.stdout)
            buffer.seek(0)
            with tarfile.open(fileobj=buffer, mode="r") as archive:
                for member in archive.getmembers():
                    if not (member.isfile() or member.isdir()) or member.name.startswith("/") or \
                            ".." in Path(member.name).parts:
                        raise TransferError(f"{self.host.name}: refusing unexpected archive member {member.name!r}")
                archive.extractall(local_dir)

    def close(self) -> None:
        if not self.host.local:
            subprocess.run(self.ssh_argv()[:-1] + ["-O", "exit", self.ssh_argv()[-1]], capture_output=True,
                           timeout=30)

    @staticmethod
    def _stderr(proc: subprocess.CompletedProcess) -> str:
        lines = [line for line in proc.stderr.decode("utf-8", "replace").splitlines()
                 if line.strip() and not line.startswith(SSH_NOISE)]
        return lines[-1][:300] if lines else f"exit code {proc.returncode}"
