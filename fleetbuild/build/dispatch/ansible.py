"""Run one shell command per host through ansible-runner's `raw` module.

`raw` needs no Python on the host, so the same path drives a Jetson Nano (Python 3.6) with the
newest ansible-core. Commands are built from argv lists with shlex.quote (see shell.py); nothing
from fleet.toml reaches a shell unquoted. No fact gathering; runs use pipelining and a long
ControlPersist. The environment handed to ansible-runner is never logged (its 'starting' status
carries all of it).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from fleetbuild.build.dispatch.transport import MASTER_OPTIONS

CANCEL_SECONDS = 30         # how long a cancelled play may take to stop

PLAYBOOK = """- hosts: "{{ fleetbuild_hosts }}"
  gather_facts: false
  tasks:
    - name: fleetbuild
      raw: "{{ fleetbuild_commands[inventory_hostname] }}"
"""


@dataclass(frozen=True)
class RawResult:
    host: str
    ok: bool
    rc: int | None
    stdout: str
    stderr: str
    unreachable: bool = False
    message: str = ""

    def reason(self) -> str:
        if self.unreachable:
            return f"unreachable: {self.message or self.stderr.strip()[:200]}"
        text = (self.stderr or self.stdout or self.message).strip().splitlines()
        return text[-1][:300] if text else f"exit code {self.rc}"


class AnsibleRunner:
    """Runs raw commands on inventory hosts; one ansible-playbook process per call."""

    def __init__(self, inventory: Path, env: Mapping[str, str], forks: int = 16,
                 control_dir: Path | None = None, shared_control_path: str | None = None) -> None:
        self.inventory = Path(inventory).resolve()     # ansible-runner runs in a directory of its own
        self.env = env
        self.forks = forks
        # Ansible's own ControlPersist masters live here (not in ~/.ansible/cp) so close() can end them.
        self.control_dir = Path(tempfile.mkdtemp(prefix="ansible-", dir=control_dir)) if control_dir else None
        self.shared_control_path = shared_control_path
        self._lock = threading.Lock()
        self.cancelled = threading.Event()
        self._pids: set[int] = set()

    def run(self, commands: Mapping[str, str], timeout: int | None = None,
            on_event: Callable[[dict], None] | None = None,
            on_result: Callable[[RawResult], None] | None = None) -> dict[str, RawResult]:
        """Each host's result of its command. `on_result` is called with each as it comes in, on
        ansible-runner's event thread (keep it short); an error it raises is raised here after
        the play."""
        import ansible_runner

        results: dict[str, RawResult] = {}
        callback_errors: list[BaseException] = []
        pids: set[int] = set()             # this run's ansible processes, forgotten when it ends
        if self.cancelled.is_set():
            return {host: RawResult(host, False, None, "", "", False, "cancelled") for host in commands}
        work = Path(tempfile.mkdtemp(prefix="fleetbuild-ansible-"))
        try:
            (work / "project").mkdir()
            (work / "project" / "raw.yml").write_text(PLAYBOOK)

            def handle(event: dict) -> bool:
                data = event.get("event_data", {})
                pid = event.get("pid")
                if pid and pid not in pids:
                    pids.add(pid)
                    with self._lock:
                        self._pids.add(pid)
                kind = event.get("event")
                host = data.get("host")
                if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable") and host:
                    res = data.get("res", {})
                    results[host] = RawResult(
                        host=host, ok=kind == "runner_on_ok", rc=res.get("rc"),
                        stdout=res.get("stdout", ""), stderr=res.get("stderr", ""),
                        unreachable=kind == "runner_on_unreachable", message=str(res.get("msg", "")))
                    if on_result is not None and not callback_errors:
                        try:
                            on_result(results[host])
                        except Exception as err:    # raised in the caller's thread after the play
                            callback_errors.append(err)
                if on_event is not None:
                    on_event(event)
                return False   # keep no event files: they would hold command output on disk

            def play() -> None:
                ansible_runner.run(
                    private_data_dir=str(work), playbook="raw.yml", inventory=str(self.inventory),
                    extravars={"fleetbuild_hosts": ",".join(commands), "fleetbuild_commands": dict(commands)},
                    envvars=self._envvars(), quiet=True, event_handler=handle, timeout=timeout,
                    cancel_callback=lambda: self.cancelled.is_set(), forks=min(self.forks, max(1, len(commands))),
                    settings={"suppress_ansible_output": True, "job_timeout": timeout or 0})

            if threading.current_thread() is not threading.main_thread():
                play()
            else:
                # Ctrl-C lands in the main thread: were the play running there, the KeyboardInterrupt
                # would unwind through ansible-runner and leave ansible-playbook running. The play
                # runs beside it instead, and an interrupt cancels it and waits for it to end.
                failure: list[BaseException] = []

                def guarded() -> None:
                    try:
                        play()
                    except BaseException as err:   # re-raised in the caller's thread below
                        failure.append(err)

                player = threading.Thread(target=guarded, name="ansible", daemon=True)
                player.start()
                try:
                    while player.is_alive():
                        player.join(0.2)
                except KeyboardInterrupt:
                    self.cancel()
                    player.join(CANCEL_SECONDS)
                    raise
                if failure:
                    raise failure[0]
        finally:
            with self._lock:
                self._pids -= pids         # never signal a PID the system may have reused
            shutil.rmtree(work, ignore_errors=True)
        if callback_errors:
            raise callback_errors[0]
        for host in commands:
            if host not in results:
                results[host] = RawResult(host, False, None, "", "", False, "no result from ansible")
                if on_result is not None:
                    on_result(results[host])
        return results

    def close(self) -> None:
        """End the SSH masters this runner's plays left behind (ControlPersist), and their directory."""
        if self.control_dir is None or not self.control_dir.is_dir():
            return
        for socket_path in self.control_dir.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "fleetbuild-master"],
                           capture_output=True, timeout=30)
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def cancel(self) -> None:
        """Stop every run: SIGTERM the ansible-playbook processes (ansible-core >= 2.19 workers call
        setsid and outlive the SIGKILL ansible-runner's cancel sends to the playbook's group; a
        SIGTERM lets ansible stop them), then let ansible-runner's cancel callback end the run."""
        import signal

        self.cancelled.set()
        with self._lock:
            pids = set(self._pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def _envvars(self) -> dict[str, str]:
        from fleetbuild.build.connection import ansible_config, config_file, ssh_args_setting

        bin_dir = str(Path(sys.executable).parent)     # ansible-runner finds ansible-playbook on PATH
        path = self.env.get("PATH", os.defpath)
        found = config_file(self.env)               # the ansible.cfg the run's inventory was read with
        with ansible_config(self.env, found):
            user_ssh_args = ssh_args_setting()
        return {
            **{k: v for k, v in self.env.items() if k.startswith("ANSIBLE_")},
            **({"ANSIBLE_CONFIG": str(found)} if found else {}),
            "PATH": bin_dir + os.pathsep + path,
            "ANSIBLE_PIPELINING": "True",
            # a master Ansible opens is the one fleetbuild's sessions then ride: the same options
            # (transport.py) first (ssh takes the first value of an option), then the user's ssh_args
            "ANSIBLE_SSH_ARGS": " ".join(MASTER_OPTIONS) + (" " + user_ssh_args if user_ssh_args else ""),
            **({"ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir)} if self.control_dir else {}),
            # the same ControlPath as fleetbuild's own ssh (transport.py): a play rides the host's
            # existing master instead of opening a second connection per host
            **({"ANSIBLE_SSH_CONTROL_PATH": self.shared_control_path.replace("%", "%%")}   # ansible %-formats it
               if self.shared_control_path else {}),
            "ANSIBLE_GATHERING": "explicit",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
            "ANSIBLE_TRANSFORM_INVALID_GROUP_CHARS": "ignore",
        }
