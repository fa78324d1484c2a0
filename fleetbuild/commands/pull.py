"""`fleetbuild pull`: what a device would do, from the controller: choose, explain, download and
install a release's engine for a device described by a probe's facts (or for this machine).

The device code (fleetbuild/remote/pull.py) does the work, so the checks are the same: for a
file:// store it reads the store directory; for another store the few objects it needs (channel,
index, signature, then the chosen engine's manifest and blob) are copied through the store plugin
into a temporary mirror first.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from fleetbuild.context import RunContext
from fleetbuild.errors import ExitCode, FleetbuildError, UsageError
from fleetbuild.config.names import channel_argument, name_argument, version_argument
from fleetbuild.store.mirror import mirror_objects, release_keys


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "pull", parents=[common], help="install the engine of a release that fits a device",
        description="Choose the engine of MODEL in a release that fits this machine (or the device whose probe "
                    "JSON --facts gives), say why every other candidate does not fit, and install it into --out "
                    "after checking the signed index and the engine's sha256, exactly as `fleetbuild-remote.pyz "
                    "pull` does on a device.")
    parser.add_argument("--model", required=True, type=name_argument("model"))
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", dest="release_version", type=version_argument, metavar="V")
    which.add_argument("--channel", type=channel_argument, metavar="NAME")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--public-key", metavar="FILE",
                        help="minisign public key (default: the public half of the configured signing key)")
    parser.add_argument("--facts", metavar="FILE", help="a device's probe JSON (fleetbuild-remote.pyz probe)")
    parser.add_argument("--precision", help="preference when several fit, e.g. 'int8,fp16'")
    parser.add_argument("--layout", choices=("plain", "triton"), default="plain")
    parser.add_argument("--dry-run", action="store_true", help="print the choice and the reasons, install nothing")
    parser.set_defaults(func=run)


def run(ctx: RunContext) -> int:
    from fleetbuild.remote.pull import PullError, pull

    config = ctx.config()
    store = ctx.store(config)
    public = ctx.public_key(config)
    if public is None:
        raise UsageError("no public key to check the release with: pass --public-key fleetbuild.pub")
    facts = _facts(ctx.args.facts)
    args = ctx.args
    project = config.project.name
    with tempfile.TemporaryDirectory(prefix="fleetbuild-pull-") as tmp:
        local = getattr(store, "root", None)
        source = str(local) if local is not None else tmp
        try:
            if local is None:
                try:
                    release_keys(store, Path(tmp), project, args.release_version, args.channel)
                except FleetbuildError:
                    pass                     # the device code says what is missing, in its words
                probe = pull(source, project, args.release_version, args.model, public, args.out, args.precision,
                             facts, args.channel, True)
                mirror_objects(store, Path(tmp), [probe.entry["manifest"],
                                                  f"blobs/sha256/{probe.entry['engine']['sha256']}"])
            result = pull(source, project, args.release_version, args.model, public, args.out, args.precision,
                          facts, args.channel, args.dry_run, None, args.layout)
        except PullError as err:
            if not err.reasons:
                raise FleetbuildError(str(err)) from None
            ctx.output.err.print(f"fleetbuild: pull: {err}", markup=False, highlight=False)
            for reason in err.reasons:               # one line per candidate: why it does not fit
                ctx.output.err.print(f"  {reason}", markup=False, highlight=False)
            return ExitCode.JOBS_FAILED
    console = ctx.output.console
    if result.status == "would install":
        console.print(f"would install {result.job_id} (release {result.version})", markup=False)
        for reason in result.reasons:
            console.print(f"  {reason}", markup=False, highlight=False)
    else:
        console.print(f"{result.status} {result.job_id} (release {result.version}) in {args.out}", markup=False)
    return ExitCode.OK


def _facts(path: str | None) -> dict | None:
    """A probe's facts from --facts, checked against the probe's own shape (as the device checks them)."""
    from fleetbuild.remote.facts import FactsError, check_facts

    if not path:
        return None
    try:
        return check_facts(json.loads(Path(path).read_text("utf-8")))
    except OSError as err:
        raise UsageError(f"--facts {path}: cannot read it: {err.strerror or err}") from None
    except FactsError as err:
        raise UsageError(f"--facts {path}: {err}") from None
    except ValueError as err:
        raise UsageError(f"--facts {path}: not a probe's JSON: {err}") from None
