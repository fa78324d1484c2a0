"""Shell command lines for hosts, from argv lists: every element quoted with shlex.quote."""
from __future__ import annotations

import re
import shlex
from typing import Mapping, Sequence


STATUS_MARK = "fleetbuild-step-status:"


def command(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """`cd CWD && env K=V ... ARGV; exit $?` with every piece quoted. '~/' at the start of a path
    stays expandable (the remote shell expands it), the rest of the path is quoted.

    The trailing `exit $?` keeps the remote shell from exec'ing the command: a command killed by a
    signal then ends the session with status 128+N. Exec'd and killed, sshd reports exit-signal,
    the ssh client exits 255 and Ansible calls the host unreachable (measured on OpenSSH 9.2).
    """
    prefix = f"cd {path(cwd)} && " if cwd else ""
    return prefix + words(argv, env) + "; exit $?"


def sequence(argvs: Sequence[Sequence[str]], env: Mapping[str, str] | None = None, stop_status: int = 130,
             final: str = "exit 0") -> str:
    """Run each argv in turn in one shell; stop when one exits with `stop_status` (an interrupted
    worker: the next job must not start). Each step prints its exit status (see `statuses`); the
    line ends with `exit 0`: each job reports through its own result file and status line."""
    steps = [words(argv, env) + f"; s=$?; echo {STATUS_MARK}{index}:$s; [ $s -eq {stop_status} ] && exit {stop_status}"
             for index, argv in enumerate(argvs)]
    return " ; ".join(steps) + f" ; {final}"


def statuses(stdout: str) -> dict[int, int]:
    """{step index: exit status} from the output of a `sequence` line."""
    return {int(i): int(s) for i, s in re.findall(STATUS_MARK + r"(\d+):(\d+)", stdout)}


def words(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """`env K=V ... ARGV`, every piece quoted: a simple command to put in a pipeline or a list."""
    quoted = " ".join(path(arg) if arg.startswith("~/") else shlex.quote(arg) for arg in argv)
    if env:
        return "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())) + " " + quoted
    return quoted


def path(value: str) -> str:
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)


BATCH_DONE = "fleetbuild-batch-done"
