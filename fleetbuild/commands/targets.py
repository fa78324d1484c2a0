"""`fleetbuild targets`: every known target (shipped, plugins, fleet.toml) and where it comes from."""
from __future__ import annotations

import argparse

from fleetbuild.commands import add_json_option
from fleetbuild.context import RunContext
from fleetbuild.report.format import table


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "targets", parents=[common], help="list the targets engines can be built for",
        description="List shipped targets, targets added by plugins and fleet.toml's [targets.*] "
                    "(fleet.toml is read when -c is given or ./fleet.toml exists).")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(ctx: RunContext) -> int:
    config = ctx.optional_config()
    registry = config.targets if config is not None else ctx.plugins().targets()
    targets = list(registry)
    if ctx.output.json is not None:
        ctx.output.emit_json({"targets": [t.summary() for t in targets]})
        if ctx.output.json == "-":
            return 0
    rows = [(t.name, t.platform, t.arch, t.compute_capability, ", ".join(t.precisions), t.dla_cores or "",
             t.tensorrt, ", ".join(t.backends), t.inventory_group, t.source) for t in targets]
    ctx.output.console.print(table(None, ("target", "platform", "arch", "CC", "precisions", "DLA",
                                          "TensorRT", "backends", "group", "defined in"), rows))
    return 0
