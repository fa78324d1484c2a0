"""Commands on one host over its persistent SSH master (or run locally for
ansible_connection=local), using the inventory's own connection settings. No Python module is
needed on the host; files cross as tar streams on the commands' stdin and stdout (session.py).

Every ssh runs in its own session: a Ctrl-C at the terminal reaches fleetbuild only, which then
stops the remote work in order, instead of killing the connections under the threads using them."""
from __future__ import annotations

import subprocess
from pathlib import Path

from fleetbuild.build.connection import become
from fleetbuild.build.hosts import Host
from fleetbuild.errors import EnvironmentProblem

# every persistent SSH master, whether fleetbuild's ssh or Ansible's opened it: a vanished host is
# noticed in ~30 s
MASTER_OPTIONS = ("-o", "ControlMaster=auto", "-o", "ControlPersist=300s", "-o", "ServerAliveInterval=10",
                  "-o", "ServerAliveCountMax=3")
SSH_NOISE = ("Warning: Permanently added", "Shared connection to", "tar: Exiting with failure status")


class TransferError(EnvironmentProblem):
    pass


class Transport:
    """ssh (or a local shell): a command line whose stdin and stdout stream to the remote command."""

    streams = True

    def __init__(self, host: Host, control_dir: Path, timeout: int = 600) -> None:
        self.host, self.control_dir, self.timeout = host, control_dir, timeout

    def ssh_argv(self) -> list[str]:
        """ssh with the options Ansible resolved for the host (connection.py), in the order Ansible's
        ssh plugin gives them, after fleetbuild's master options (ssh takes the first value of each)."""
        link = self.host.link
        argv = [link.ssh_executable, "-o", "BatchMode=yes", "-o", f"ControlPath={self.control_path(self.control_dir)}",
                *MASTER_OPTIONS]
        if not link.host_key_checking:
            argv += ["-o", "StrictHostKeyChecking=no"]
        if link.port:
            argv += ["-o", f"Port={link.port}"]
        if link.key_file:
            argv += ["-o", f"IdentityFile={link.key_file}"]
        if link.user:
            argv += ["-o", f"User={link.user}"]
        if link.timeout:
            argv += ["-o", f"ConnectTimeout={link.timeout}"]
        argv += link.ssh_args
        argv.append(self.host.address)
        return argv

    @staticmethod
    def control_path(control_dir: Path) -> str:
        """ssh's ControlPath for every host (%C: a hash of local host, host, port and user)."""
        return f"{control_dir}/%C"

    def argv(self, remote_command: str) -> list[str]:
        remote_command = become(remote_command, self.host.link.become_user)
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


class PluginTransport(Transport):
    """Commands through the host's own Ansible connection plugin (docker, podman, lxd, kubectl, ...):
    one connection object for the whole run; stdin and stdout cross as files (put_file, fetch_file)
    in the host's work dir, so a batch is three plugin calls instead of one stream."""

    streams = False

    def __init__(self, host: Host, control_dir: Path, timeout: int = 600) -> None:
        super().__init__(host, control_dir, timeout)
        self.plugin = host.link.plugin_object
        self._connected = False

    def _call(self, what: str, fn, *args):
        try:
            if not self._connected:
                self.plugin._connect()
                self._connected = True
            return fn(*args)
        except Exception as err:                   # Ansible's own connection errors, in one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TransferError(f"{self.host.name}: {what} through {self.host.link.plugin}: {first}") from None

    def run(self, remote_command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        command = become(remote_command, self.host.link.become_user)
        if stdin is None:
            rc, out, err = self._call("command", self.plugin.exec_command, command, None, False)
            return subprocess.CompletedProcess(command, rc, out, err)
        import tempfile

        with tempfile.NamedTemporaryFile() as handle:
            handle.write(stdin)
            handle.flush()
            return self.run_files(remote_command, Path(handle.name), None, scratch=self.host.workdir)

    def run_files(self, remote_command: str, stdin: Path | None, stdout: Path | None,
                  scratch: str) -> subprocess.CompletedProcess:
        """Run `remote_command` with `stdin` (a local file) on its stdin and, when `stdout` is given,
        its stdout written there (fetched after it ended); the files cross through `scratch`, a
        directory on the host (the work dir)."""
        import secrets
        import shlex

        base = f"{scratch}/.fleetbuild-io-{secrets.token_hex(6)}"
        files = []
        line = remote_command
        if stdin is not None:
            self._call("upload", self.plugin.put_file, str(stdin), base + ".in")
            files.append(base + ".in")
        wrapped = "( " + become(line, self.host.link.become_user) + " )"
        if stdin is not None:
            wrapped += f" < {shlex.quote(base + '.in')}"
        if stdout is not None:
            wrapped += f" > {shlex.quote(base + '.out')}"
            files.append(base + ".out")
        try:
            rc, out, err = self._call("command", self.plugin.exec_command, wrapped, None, False)
            if stdout is not None:
                self._call("download", self.plugin.fetch_file, base + ".out", str(stdout))
        finally:
            if files:
                self._call("clean-up", self.plugin.exec_command, "rm -f " + " ".join(shlex.quote(f) for f in files),
                           None, False)
        return subprocess.CompletedProcess(wrapped, rc, out, err)

    def argv(self, remote_command: str) -> list[str]:
        raise TransferError(f"{self.host.name}: {self.host.link.plugin} gives no command line to stream through")

    def close(self) -> None:
        if self._connected:
            try:
                self.plugin.close()
            except Exception:                       # closing a connection that is gone already
                pass
            self._connected = False


def transport_for(host: Host, control_dir: Path) -> Transport:
    return PluginTransport(host, control_dir) if host.connection == "ansible" else Transport(host, control_dir)
