"""`fleetbuild publish` (a release from what is in the store) and `fleetbuild keys generate`."""
from __future__ import annotations

import argparse
from pathlib import Path

from fleetbuild.build import pipeline
from fleetbuild.commands import add_inventory_option, add_local_option, add_selection, selection
from fleetbuild.context import RunContext
from fleetbuild.config.names import channel_argument, version_argument
from fleetbuild.errors import ExitCode


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    publish = subparsers.add_parser(
        "publish", parents=[common], help="publish a release from the engines in the store",
        description="Write the release index (signed when a key is configured) for every selected job whose "
                    "engine is in the store. Refuses when a job is missing (build it, or --skip it), and when "
                    "the version already holds other content for a job (unless --force).")
    add_selection(publish)
    publish.add_argument("--version", dest="release_version", metavar="V", type=version_argument,
                         help="default: [project] version")
    publish.add_argument("--channel", metavar="NAME", type=channel_argument,
                         help="point channel NAME (e.g. stable) at this version")
    publish.add_argument("--force", action="store_true", help="replace jobs already in the version")
    add_inventory_option(publish)
    add_local_option(publish)
    publish.add_argument("--facts-max-age", type=float, default=3600, metavar="SECONDS",
                         help="use cached host facts younger than this (default 3600) to find the builds")
    publish.set_defaults(func=run)
    keys = subparsers.add_parser("keys", parents=[common], help="signing keys",
                                 description="Manage the Ed25519 key that signs manifests and releases.")
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = actions.add_parser(
        "generate", parents=[common], help="write fleetbuild.key (secret) and fleetbuild.pub (minisign format)",
        description="Write a new signing key pair. The secret key is encrypted when FLEETBUILD_SIGNING_PASSPHRASE "
                    "is set. Devices and `minisign -V -p fleetbuild.pub` verify with the public key.")
    generate.add_argument("directory", nargs="?", default=".", metavar="DIR")
    generate.add_argument("--force", action="store_true", help="replace an existing key pair")
    generate.set_defaults(func=run_generate)


def run_generate(ctx: RunContext) -> int:
    from fleetbuild.store import signing

    secret, public, signer = signing.generate(Path(ctx.args.directory), ctx.env, ctx.args.force)
    ctx.output.console.print(f"wrote {secret} (secret, mode 0600) and {public}; key id {signer.key_id_text}",
                             markup=False)
    return 0


def run(ctx: RunContext) -> int:
    setup = pipeline.prepare_build(ctx, selection(ctx), ctx.inventory(ctx.config()))
    manifests, missing = pipeline.find_in_store(ctx, setup, ctx.args.facts_max_age,
                                                pipeline.events_for(ctx, setup.config))
    if missing or setup.plan.invalid:
        for planned in missing:
            ctx.output.err.print(f"not in the store: {planned.job.id} (build it first, or --skip it)", markup=False)
        for planned in setup.plan.invalid:
            ctx.output.err.print(f"invalid: {planned.job.id} (see `fleetbuild matrix plan`)", markup=False)
        ctx.output.err.print("nothing published", markup=False)
        return ExitCode.JOBS_FAILED
    release = pipeline.publish_release(ctx, setup, manifests, ctx.args.release_version or setup.config.project.version,
                                       ctx.args.channel, ctx.args.force)
    ctx.output.err.print(pipeline.release_line(release), markup=False)
    return 0
