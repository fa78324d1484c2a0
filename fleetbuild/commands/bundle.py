"""`fleetbuild bundle`: write the worker zipapp, to run the probe or a build by hand on a host."""
from __future__ import annotations

import argparse
from pathlib import Path

from fleetbuild.build.bundle import build_zipapp
from fleetbuild.context import RunContext
from fleetbuild.errors import EnvironmentProblem


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "bundle", parents=[common], help="write the worker zipapp (fleetbuild-remote.pyz)",
        description="Write fleetbuild-remote.pyz: the probe and the build worker (Python 3.6+, standard "
                    "library only). On a host: `python3 fleetbuild-remote.pyz probe`, "
                    "`python3 fleetbuild-remote.pyz build --spec spec.json --out DIR`.")
    parser.add_argument("output", nargs="?", default=".", metavar="PATH", help="file or directory (default: .)")
    parser.set_defaults(func=run)


def run(ctx: RunContext) -> int:
    try:
        path, digest = build_zipapp(Path(ctx.args.output))
    except OSError as err:
        raise EnvironmentProblem(f"{ctx.args.output}: cannot write the zipapp: {err.strerror or err}") from None
    ctx.output.console.print(f"wrote {path} (sha256 {digest})")
    return 0
