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
    return prefix + _run(argv, env) + "; exit $?"


def sequence(argvs: Sequence[Sequence[str]], env: Mapping[str, str] | None = None, stop_status: int = 130,
             final: str = "exit 0") -> str:
    """Run each argv in turn in one shell; stop when one exits with `stop_status` (an interrupted
    worker: the next job must not start). Each step prints its exit status (see `statuses`); the
    line ends with `exit 0`: each job reports through its own result file and status line."""
    steps = [_run(argv, env) + f"; s=$?; echo {STATUS_MARK}{index}:$s; [ $s -eq {stop_status} ] && exit {stop_status}"
             for index, argv in enumerate(argvs)]
    return " ; ".join(steps) + f" ; {final}"


def statuses(stdout: str) -> dict[int, int]:
    """{step index: exit status} from the output of a `sequence` line."""
    return {int(i): int(s) for i, s in re.findall(STATUS_MARK + r"(\d+):(\d+)", stdout)}


def _run(argv: Sequence[str], env: Mapping[str, str] | None) -> str:
    words = " ".join(path(arg) if arg.startswith("~/") else shlex.quote(arg) for arg in argv)
    if env:
        return "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())) + " " + words
    return words


def path(value: str) -> str:
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)


BATCH_DONE = "fleetbuild-batch-done"
BATCH_PID = "fleetbuild-batch-pid:"
BATCH_ALIVE = "fleetbuild-batch-alive"


def detached(directory: str, line: str) -> str:
    """Start `line` in DIRECTORY in a new session (setsid, else nohup), its output in batch.log, and
    print its PID. It outlives the SSH connection that started it: a lost connection can resume."""
    inner = shlex.quote(f"{line} ; echo {BATCH_DONE}")
    # `trap '' HUP` first: the raw session's pty hangs up as soon as this line returns, and the
    # background subshell could otherwise die of SIGHUP before it reaches setsid (measured).
    return (f"mkdir -p {path(directory)} && cd {path(directory)} && trap '' HUP && "
            "{ command -v setsid >/dev/null 2>&1 && L=setsid || L=nohup; } && "
            f"{{ $L sh -c {inner} > batch.log 2>&1 < /dev/null & }} && echo $! > batch.pid && "
            f"echo {BATCH_PID}$!; exit 0")


def kill_batch(directory: str) -> str:
    """Stop a detached batch (its process group: the batch shell and the running worker)."""
    pid_file = path(directory + "/batch.pid")
    return (f'pid=$(cat {pid_file} 2>/dev/null) && [ -n "$pid" ] && '
            '{ kill -TERM -- "-$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null; }; exit 0')


def batch_poll(directory: str, pid: int) -> str:
    return (f"cat {path(directory + '/batch.log')} 2>/dev/null; "
            f"if kill -0 {int(pid)} 2>/dev/null; then echo {BATCH_ALIVE}; fi; exit 0")
