"""Commands on one host over its persistent SSH master (or run locally for
ansible_connection=local), using the inventory's own connection settings. No Python module is
needed on the host; files cross as tar streams on the commands' stdin and stdout (session.py).

Every ssh runs in its own session: a Ctrl-C at the terminal reaches fleetbuild only, which then
stops the remote work in order, instead of killing the connections under the threads using them."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from fleetbuild.errors import EnvironmentProblem
from fleetbuild.build.hosts import Host

# every persistent SSH master, whether fleetbuild's ssh or Ansible's opened it: a vanished host is
# noticed in ~30 s
MASTER_OPTIONS = ("-o", "ControlMaster=auto", "-o", "ControlPersist=300s", "-o", "ServerAliveInterval=10",
                  "-o", "ServerAliveCountMax=3")
SSH_NOISE = ("Warning: Permanently added", "Shared connection to", "tar: Exiting with failure status")


class TransferError(EnvironmentProblem):
    pass


class Transport:
    def __init__(self, host: Host, control_dir: Path, timeout: int = 600) -> None:
        self.host, self.control_dir, self.timeout = host, control_dir, timeout

    def ssh_argv(self) -> list[str]:
        host = self.host
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ControlPath={self.control_path(self.control_dir)}",
                *MASTER_OPTIONS]
        if host.port:
            argv += ["-p", str(host.port)]
        if host.key_file:
            argv += ["-i", host.key_file]
        argv += shlex.split(host.ssh_args)
        argv.append(f"{host.user}@{host.address}" if host.user else host.address)
        return argv

    @staticmethod
    def control_path(control_dir: Path) -> str:
        """ssh's ControlPath for every host (%C: a hash of local host, host, port and user)."""
        return f"{control_dir}/%C"

    def argv(self, remote_command: str) -> list[str]:
        if self.host.local:
            return ["sh", "-c", remote_command]
        return self.ssh_argv() + ["--", remote_command]

    def run(self, remote_command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self.argv(remote_command), input=stdin, capture_output=True,
                                  timeout=self.timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise TransferError(f"{self.host.name}: timed out after {self.timeout} s") from None

    def close(self) -> None:
        if not self.host.local:
            subprocess.run(self.ssh_argv()[:-1] + ["-O", "exit", self.ssh_argv()[-1]], capture_output=True,
                           timeout=30, start_new_session=True)

    @staticmethod
    def _stderr(proc: subprocess.CompletedProcess) -> str:
        return Transport.stderr_line(proc.stderr, proc.returncode)

    @staticmethod
    def stderr_line(stderr: bytes, returncode: int | None) -> str:
        """The last line of a command's stderr that is not ssh's own chatter."""
        lines = [line for line in stderr.decode("utf-8", "replace").splitlines()
                 if line.strip() and not line.startswith(SSH_NOISE)]
        return lines[-1][:300] if lines else f"exit code {returncode}"
