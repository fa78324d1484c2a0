"""One module per subcommand; each has `add_parser(subparsers, common)` and sets `func`. Commands
are adapters: they parse arguments, call one service (fleetbuild.build.pipeline, devices.deploy, ...)
and map errors to exit codes. They may import every stage; no command imports another; the options
they share are here."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.context import RunContext
    from fleetbuild.config.selectors import Selector


def add_json_option(parser: argparse.ArgumentParser, what: str = "JSON") -> None:
    """--json [FILE]: machine output to stdout, or to FILE (written atomically)."""
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help=f"write {what} (stdout or FILE)")


def add_report_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", metavar="FILE",
                        help="write an HTML report (one self-contained page: models x targets, each job's details)")


def add_inventory_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--inventory", metavar="FILE", help="Ansible inventory (default: [inventory] path)")


def add_keep_connections_option(parser: argparse.ArgumentParser, hosts: str) -> None:
    parser.add_argument("--keep-connections", action="store_true",
                        help=f"leave the SSH connections to the {hosts} open for 5 minutes after the run, for the "
                             "next run to reuse (by default they are closed when the run ends)")


def add_local_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local", action="store_true",
                        help="this machine is the build host (Ansible's local connection, still probed and checked) "
                             "instead of the inventory's hosts: for a self-hosted CI runner that builds")
    parser.add_argument("--local-python", metavar="PYTHON",
                        help="with --local: the worker's Python (default: the one running fleetbuild)")


def add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="only jobs matching PATTERN (fnmatch over model/target/precision[+variant], "
                             "{a,b} alternatives; a pattern without '/' matches one component, e.g. "
                             "'nano' or 'fp16'); repeatable")
    parser.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                        help="leave out jobs matching PATTERN; repeatable")


def selection(ctx: "RunContext") -> "Selector":
    """The --only / --skip selection of the command line."""
    from fleetbuild.config.selectors import Selector

    return Selector(ctx.args.only, ctx.args.skip)
