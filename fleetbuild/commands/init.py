"""`fleetbuild init`: write a commented starter fleet.toml and Ansible inventory."""
from __future__ import annotations

import argparse
import importlib.resources
import os
from pathlib import Path

from fleetbuild.context import RunContext
from fleetbuild.errors import UsageError

FILES = ("fleet.toml", "inventory.ini")


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("init", parents=[common], help="write a starter fleet.toml and inventory",
                                   description="Write a commented fleet.toml and inventory.ini into DIR.")
    parser.add_argument("directory", nargs="?", default=".", metavar="DIR", help="where to write (default: .)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.set_defaults(func=run)


def run(ctx: RunContext) -> int:
    directory = Path(ctx.args.directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    existing = [name for name in FILES if (directory / name).exists()]
    if existing and not ctx.args.force:
        raise UsageError(f"{directory / existing[0]} already exists (use --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    templates = importlib.resources.files("fleetbuild").joinpath("templates")
    for name in FILES:
        text = templates.joinpath(name).read_text("utf-8")
        tmp = directory / f".{name}.tmp-{os.getpid()}"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, directory / name)
        ctx.output.console.print(f"wrote {directory / name}")
    ctx.output.console.print("next: put your ONNX model at models/classifier.onnx, then run "
                             "`fleetbuild matrix plan`")
    return 0
