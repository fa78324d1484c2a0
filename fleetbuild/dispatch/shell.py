"""Shell command lines for hosts, from argv lists: every element quoted with shlex.quote."""
from __future__ import annotations

import shlex
from typing import Mapping, Sequence


def command(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """`cd CWD && env K=V ... ARGV` with every piece quoted. '~/' at the start of a path stays
    expandable (the remote shell expands it), the rest of the path is quoted."""
    parts = []
    if cwd:
        parts.append(f"cd {path(cwd)} &&")
    if env:
        parts.append("env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())))
    parts.append(" ".join(path(arg) if arg.startswith("~/") else shlex.quote(arg) for arg in argv))
    return " ".join(parts)


def path(value: str) -> str:
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)
