"""What a bench needs, said plainly before it starts (instead of a traceback half-way)."""
from __future__ import annotations

import importlib
import os
import shutil
import sys

HOW = "make test-deps && make venv (or: make test, which sets up everything the benches use)"


def module(name: str, how: str = HOW) -> None:
    try:
        importlib.import_module(name)
    except ImportError:
        sys.exit(f"{os.path.basename(sys.argv[0])} needs the Python module {name}: {how}")


def command(name: str, how: str = HOW, also: tuple[str, ...] = ()) -> None:
    if shutil.which(name) is None and not any(os.access(p, os.X_OK) for p in also):
        sys.exit(f"{os.path.basename(sys.argv[0])} needs {name}: {how}")


def root(why: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])} must run as root: {why}")
