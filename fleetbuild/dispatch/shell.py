"""Shell command lines for hosts, from argv lists: every element quoted with shlex.quote."""
from __future__ import annotations

import shlex
from typing import Mapping, Sequence


def command(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """`cd CWD && env K=V ... ARGV; exit $?` with every piece quoted. '~/' at the start of a path
    stays expandable (the remote shell expands it), the rest of the path is quoted.

    The trailing `exit $?` keeps the remote shell from exec'ing the command: a command killed by a
    signal then ends the session with status 128+N. Exec'd and killed, sshd reports exit-signal,
    the ssh client exits 255 and Ansible calls the host unreachable (measured on OpenSSH 9.2).
    """
    parts = []
    if cwd:
        parts.append(f"cd {path(cwd)} &&")
    if env:
        parts.append("env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())))
    parts.append(" ".join(path(arg) if arg.startswith("~/") else shlex.quote(arg) for arg in argv))
    return " ".join(parts) + "; exit $?"


def path(value: str) -> str:
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)
