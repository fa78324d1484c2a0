"""Typed errors and the exit codes the CLI maps them to.

User errors are FleetbuildError subclasses: the CLI prints their one-line message (no traceback
unless --debug) and exits with their exit_code. Per-job failures are not exceptions: they are
Problem / JobResult records (see plan/problems.py, report/results.py).
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    JOBS_FAILED = 1      # some selected jobs are invalid or failed
    USAGE = 2            # bad command line (argparse uses 2 as well)
    CONFIG = 3           # fleet.toml, a target file or the inventory is wrong
    ENVIRONMENT = 4      # something outside the config is missing or broken
    PLUGIN = 5           # a plugin failed to load or broke a hook contract
    INTERNAL = 70        # EX_SOFTWARE: a bug in fleetbuild, not the user's fault
    INTERRUPTED = 130    # Ctrl-C / SIGTERM


class FleetbuildError(Exception):
    """Base of all user-facing errors; str(err) is the one line the user sees."""

    exit_code = ExitCode.ENVIRONMENT


class ConversionError(FleetbuildError):
    """A model could not be converted (precision, opset); the job fails with this reason."""


class UsageError(FleetbuildError):
    exit_code = ExitCode.USAGE


class ConfigError(FleetbuildError):
    """A configuration mistake: names the file and the key path, says what is wrong and how to fix it."""

    exit_code = ExitCode.CONFIG

    def __init__(self, file: object, key: str, message: str, hint: str = "") -> None:
        self.file, self.key, self.message, self.hint = str(file), key, message, hint
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(where + message + (f" ({hint})" if hint else ""))


class EnvironmentProblem(FleetbuildError):
    exit_code = ExitCode.ENVIRONMENT


class PluginError(FleetbuildError):
    exit_code = ExitCode.PLUGIN


class Interrupted(FleetbuildError):
    exit_code = ExitCode.INTERRUPTED


def is_interrupt(err: BaseException) -> bool:
    """A KeyboardInterrupt, or an exception it caused: CPython re-raises an interrupt that lands in a
    class body's __set_name__ (a dataclass, rich) as RuntimeError with the interrupt as its cause."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False
