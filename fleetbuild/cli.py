"""The command-line front: parses arguments, runs one command, maps errors to exit codes.

Exit codes: 0 ok · 1 some jobs invalid or failed · 2 usage · 3 configuration · 4 environment
· 5 plugin · 70 internal error (a bug) · 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import traceback
from typing import Mapping, Sequence, TextIO

from fleetbuild import __version__
from fleetbuild.remote.redact import RedactingStream
from fleetbuild.commands import (artifacts, bundle, deploy, hosts, init, inspect, matrix, plugins, publish, pull,
                                 rollout, targets)
from fleetbuild.context import RunContext
from fleetbuild.errors import ExitCode, FleetbuildError, is_interrupt
from fleetbuild.report.events import OutputOptions

COMMANDS = (matrix, hosts, publish, deploy, pull, rollout, artifacts, targets, plugins, inspect, bundle, init)

EPILOG = """exit codes: 0 ok, 1 some jobs invalid or failed, 2 usage error, 3 configuration error,
4 environment error, 5 plugin error, 70 internal error, 130 interrupted"""


def common_options(suppress: bool) -> argparse.ArgumentParser:
    """Global options, accepted before or after the command (`fleetbuild -c X matrix plan` and
    `fleetbuild matrix plan -c X`). After the command their defaults are suppressed, so they do
    not reset what was given before it."""
    default = argparse.SUPPRESS if suppress else None
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("global options")
    group.add_argument("-c", "--config", metavar="FILE", default=default,
                       help="fleet.toml to use (default: ./fleet.toml)")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS if suppress else False,
                       help="show tracebacks for errors")
    group.add_argument("-p", dest="plugin", action="append", metavar="PLUGIN",
                       default=argparse.SUPPRESS if suppress else None,
                       help="load plugin module PLUGIN, or block plugin NAME with no:NAME; repeatable")
    group.add_argument("--no-entry-points", action="store_true",
                       default=argparse.SUPPRESS if suppress else False,
                       help="do not load plugins from the 'fleetbuild' entry-point group "
                            "(also: FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD=1)")
    group.add_argument("--github", action="store_true", default=argparse.SUPPRESS if suppress else False,
                       help="GitHub Actions mode: groups, annotations, step summary and outputs "
                            "(on by default when GITHUB_ACTIONS=true)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetbuild", parents=[common_options(suppress=False)], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build TensorRT engines for a fleet of GPU targets.")
    parser.add_argument("--version", action="version", version=f"fleetbuild {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options(suppress=True)
    for command in COMMANDS:
        command.add_parser(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None, plugins: Sequence[object] = ()) -> int:
    """Run one fleetbuild command; returns its exit code (never raises for user errors)."""
    stderr = RedactingStream(stderr or sys.stderr)      # messages and tracebacks alike: no secret printed
    parser = build_parser()
    try:  # argparse prints --help, --version and usage errors itself
        with contextlib.redirect_stdout(stdout or sys.stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    env = dict(os.environ if env is None else env)
    output = OutputOptions.create(getattr(args, "json", None), stdout, stderr, getattr(args, "all", False),
                                  github=bool(getattr(args, "github", False)), report=getattr(args, "report", None),
                                  env=env)
    ctx = RunContext(args=args, env=env, output=output, extra_plugins=plugins)
    previous_sigterm = _sigterm_as_interrupt()
    try:
        return int(args.func(ctx))
    except FleetbuildError as err:
        if args.debug:
            traceback.print_exc(file=stderr)
        stderr.write(f"fleetbuild: error: {err}\n")
        return int(err.exit_code)
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc(file=stderr)
        stderr.write("fleetbuild: interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as err:
        if is_interrupt(err):
            if args.debug:
                traceback.print_exc(file=stderr)
            stderr.write("fleetbuild: interrupted\n")
            return int(ExitCode.INTERRUPTED)
        traceback.print_exc(file=stderr)
        stderr.write(f"fleetbuild: internal error: {type(err).__name__}: {err} (this is a bug; please "
                     "report it with the traceback above)\n")
        return int(ExitCode.INTERNAL)
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sigterm_as_interrupt():
    """SIGTERM stops a run like Ctrl-C does (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

