"""`fleetbuild inspect ENGINE`: flavor and TensorRT version from the engine's header (no TensorRT
needed) and, when a manifest.json sits beside it, whether the two agree."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fleetbuild.commands import add_json_option
from fleetbuild.context import RunContext
from fleetbuild.errors import ExitCode, FleetbuildError, UsageError
from fleetbuild.filehash import sha256_file
from fleetbuild.remote.header import HeaderError, read_header
from fleetbuild.report.format import table


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "inspect", parents=[common], help="show an engine's TensorRT flavor and version",
        description="Read an engine's header (no TensorRT needed) and check it against the manifest.json "
                    "beside it. Exit code 1 when they disagree.")
    parser.add_argument("engine", metavar="ENGINE", help="a serialized engine (.plan / .engine)")
    add_json_option(parser)
    parser.set_defaults(func=run)


def run(ctx: RunContext) -> int:
    path = Path(ctx.args.engine)
    try:
        header = read_header(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not an engine") from None
    except HeaderError as err:
        raise NotAnEngine(f"{path}: {err}") from None
    if header["truncated"]:
        raise NotAnEngine(f"{path}: truncated: {header['file_size']:,} of {header['size']:,} bytes (the size its "
                         f"{header['flavor']} {header['version']} header records); fetch or build it again")
    manifest = _manifest_for(path)
    checks = []
    if manifest is not None:
        recorded = manifest.get("tensorrt", {})
        engine = manifest.get("engine", {})
        checks.append(("flavor", header["flavor"], recorded.get("flavor"), header["flavor"] == recorded.get("flavor")))
        version_ok = header["version"] is None or header["version"] == recorded.get("version")
        checks.append(("version", header["version"] or "(not in header)", recorded.get("version"), version_ok))
        digest = sha256_file(path)
        checks.append(("sha256", digest, engine.get("sha256"), digest == engine.get("sha256")))
    agree = all(ok for *_, ok in checks)
    data = {"engine": str(path), "header": header, "manifest": str(path.parent / "manifest.json") if manifest else None,
            "checks": [{"field": f, "engine": e, "manifest": m, "agree": ok} for f, e, m, ok in checks],
            "agree": agree if manifest else None}
    if manifest:
        data.update(job_id=manifest.get("job_id"), compute_capability=manifest.get("compute_capability"),
                    precision=manifest.get("precision"))
    if ctx.output.json is not None:
        ctx.output.emit_json(data)
    if ctx.output.json != "-":
        console = ctx.output.console
        console.print(f"{path}: {header['flavor']} {header['version'] or '(version not in header)'}")
        if manifest is None:
            console.print("no manifest.json beside it: nothing to compare")
        else:
            console.print(f"job {manifest.get('job_id')}, compute capability {manifest.get('compute_capability')}, "
                          f"{manifest.get('precision')}")
            console.print(table(None, ("field", "engine", "manifest", "agree"),
                                [(f, e, m, "yes" if ok else "NO") for f, e, m, ok in checks]))
    return ExitCode.OK if agree else ExitCode.JOBS_FAILED


class NotAnEngine(FleetbuildError):
    """The file is not a whole TensorRT engine: the check failed (exit code 1)."""

    exit_code = ExitCode.JOBS_FAILED


def _manifest_for(engine: Path) -> dict | None:
    candidate = engine.parent / "manifest.json"
    try:
        manifest = json.loads(candidate.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("engine", {}).get("file") != engine.name:
        return None
    return manifest
