"""`fleetbuild plugins`: what is loaded, from where, implementing which hooks."""
from __future__ import annotations

import argparse
import dataclasses

from fleetbuild.commands import add_json_option
from fleetbuild.config.fleet import read_fleet_toml
from fleetbuild.context import RunContext
from fleetbuild.report.format import table


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "plugins", parents=[common], help="list loaded plugins and their hooks",
        description="List built-in plugins, entry-point plugins (group 'fleetbuild') and modules "
                    "named with -p or fleet.toml's [plugins] load.")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(ctx: RunContext) -> int:
    raw = read_fleet_toml(ctx.config_path) if ctx.config_given or ctx.config_path.exists() else None
    listing = ctx.plugins(raw).listing()
    if ctx.output.json is not None:
        ctx.output.emit_json({"plugins": [dataclasses.asdict(p) for p in listing]})
        if ctx.output.json == "-":
            return 0
    rows = [(p.name, p.kind, p.origin, ", ".join(h.removeprefix("fleetbuild_") for h in p.hooks))
            for p in listing]
    ctx.output.console.print(table(None, ("plugin", "kind", "from", "hooks"), rows))
    return 0
