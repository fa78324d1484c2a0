"""`fleetbuild artifacts`: what is in the store, checks of a release, garbage collection."""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from fleetbuild.commands import add_json_option
from fleetbuild.context import RunContext
from fleetbuild.errors import EnvironmentProblem, ExitCode, UsageError
from fleetbuild.config.names import version_argument
from fleetbuild.report.format import table
from fleetbuild.store.api import NotFound
from fleetbuild.store.gc import grace_hours

INDEX = re.compile(r"^releases/([^/]+)/([^/]+)/index\.json$")


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    artifacts = subparsers.add_parser("artifacts", parents=[common], help="inspect, verify and clean the store",
                                      description="Inspect, verify and clean the artifact store of fleet.toml.")
    actions = artifacts.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="releases in the store, and counts")
    add_json_option(listing)
    listing.set_defaults(func=run_list)
    show = actions.add_parser("show", parents=[common], help="the jobs of one release")
    show.add_argument("version", metavar="VERSION", type=version_argument)
    add_json_option(show)
    show.set_defaults(func=run_show)
    verify = actions.add_parser(
        "verify", parents=[common], help="check a release: signatures, every manifest and blob, every hash",
        description="Check the release index signature (with --public-key, or the public half of the configured "
                    "signing key), that every manifest and engine it names is there, and every engine's sha256. "
                    "Exit code 1 on any problem.")
    verify.add_argument("version", metavar="VERSION", type=version_argument)
    verify.add_argument("--public-key", metavar="FILE", help="minisign public key (fleetbuild.pub)")
    verify.add_argument("--complete", action="store_true",
                        help="also require every valid job of fleet.toml's matrix to be in the release (when "
                             "several runners published parts of it)")
    verify.add_argument("--save", metavar="DIR",
                        help="when the release checks out, also write its index.json and index.json.minisig "
                             "to DIR (to attach them to a GitHub release)")
    verify.set_defaults(func=run_verify)
    export = actions.add_parser(
        "export", parents=[common], help="write a release as a Triton model repository",
        description="Write DIR/MODEL/config.pbtxt and DIR/MODEL/1/model_<CC>.plan for every model of the release: "
                    "one engine per compute capability (chosen by precision preference), named in the config's "
                    "cc_model_filenames so one repository serves GPUs of several kinds. The index's signature is "
                    "checked first, engines are hashed as they are copied, and models are moved into DIR only "
                    "when the whole release checked out.")
    export.add_argument("version", metavar="VERSION", type=version_argument)
    export.add_argument("--layout", choices=("triton",), default="triton")
    export.add_argument("--out", required=True, metavar="DIR")
    export.add_argument("--precision", help="preference when a CC has several engines, e.g. 'int8,fp16' "
                                            "(default fp16, bf16, fp32, tf32, int8, fp8)")
    export.add_argument("--public-key", metavar="FILE",
                        help="minisign public key the index must be signed with (default: the public half of the "
                             "configured signing key)")
    export.add_argument("--allow-unsigned", action="store_true",
                        help="export a release without checking a signature (when there is no key to check with)")
    export.set_defaults(func=run_export)
    gc = actions.add_parser("gc", parents=[common], help="delete engines no kept release or manifest refers to",
                            description="Delete engine blobs that no kept release index and no builds/ manifest "
                                        "names and that are older than the grace period (so uploads in flight are "
                                        "never touched). A kept release that cannot be read stops gc before it "
                                        "deletes anything.")
    gc.add_argument("--grace-hours", type=grace_hours, default=24, metavar="H", help="default 24")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    gc.add_argument("--keep-releases", type=int, metavar="N",
                    help="also remove each project's releases beyond the newest N (never one a channel points to), "
                         "and the manifests only those releases referenced")
    gc.set_defaults(func=run_gc)


def _store(ctx: RunContext) -> tuple[Any, Any]:
    config = ctx.config()
    return config, ctx.store(config)


def run_list(ctx: RunContext) -> int:
    config, store = _store(ctx)
    releases, builds, blobs = [], 0, 0
    for key in store.list(""):
        match = INDEX.match(key)
        if match:
            index = json.loads(store.read_bytes(key)[0])
            releases.append({"project": match.group(1), "version": match.group(2), "sequence": index["sequence"],
                             "jobs": len(index["entries"]), "created": index["created"], "expires": index["expires"]})
        elif key.startswith("builds/") and key.endswith(".json"):
            builds += 1
        elif key.startswith("blobs/sha256/"):
            blobs += 1
    data = {"store": store.url, "releases": releases, "builds": builds, "blobs": blobs}
    if ctx.output.json is not None:
        ctx.output.emit_json(data)
    if ctx.output.json != "-":
        ctx.output.console.print(table(None, ("project", "version", "sequence", "jobs", "created", "expires"), [
            (r["project"], r["version"], r["sequence"], r["jobs"], _date(r["created"]), _date(r["expires"]))
            for r in releases]))
        ctx.output.console.print(f"{store.url}: {len(releases)} releases, {builds} build manifests, {blobs} engines",
                                 markup=False)
    return 0


def _index(store: Any, project: str, version: str) -> tuple[bytes, dict]:
    try:
        data = store.read_bytes(f"releases/{project}/{version}/index.json")[0]
    except NotFound:
        published = sorted({m.group(2) for k in store.list(f"releases/{project}/") if (m := INDEX.match(k))})
        raise UsageError(f"release {project} {version} is not in the store {store.url}; published: "
                         + (", ".join(published) if published else "none yet")) from None
    return data, json.loads(data)


def run_show(ctx: RunContext) -> int:
    config, store = _store(ctx)
    _, index = _index(store, config.project.name, ctx.args.version)
    if ctx.output.json is not None:
        ctx.output.emit_json(index)
    if ctx.output.json != "-":
        rows = [(job, e["target"], e["compute_capability"], e["precision"],
                 f"{e['tensorrt']['flavor']} {e['tensorrt']['version']}", e["engine"]["size"], e["build_key"][:12])
                for job, e in sorted(index["entries"].items())]
        ctx.output.console.print(table(f"{index['project']} {index['version']} (sequence {index['sequence']})",
                                       ("job", "target", "CC", "precision", "TensorRT", "bytes", "build key"), rows))
    return 0


def run_verify(ctx: RunContext) -> int:
    from fleetbuild.remote.release import ReleaseError, check_index, signature_key
    from fleetbuild.remote.verify import SignatureError, verify_minisig

    config, store = _store(ctx)
    project, version = config.project.name, ctx.args.version
    data, index = _index(store, project, version)
    problems: list[tuple[str, str]] = []
    signature = ""
    public = ctx.public_key(config)
    if public is None:
        problems.append(("index", "no public key to check the signature with (--public-key)"))
    else:
        try:
            signature = store.read_bytes(signature_key(data, f"releases/{project}/{version}"))[0].decode()
            check_index(data, signature, public, project, version)
        except NotFound:
            problems.append(("index", "no signature for this index"))
        except ReleaseError as err:
            problems.append(("index", str(err)))
    if ctx.args.complete:
        problems += [(job, "valid in the plan but not in the release (its build did not publish)")
                     for job in _planned_jobs(ctx) if job not in index["entries"]]
    with tempfile.TemporaryDirectory() as tmp:
        for job, entry in sorted(index["entries"].items()):
            try:
                manifest_bytes = store.read_bytes(entry["manifest"])[0]
            except NotFound:
                problems.append((job, f"manifest {entry['manifest']} is missing"))
                continue
            if public is not None and store.exists(entry["manifest"] + ".minisig"):
                try:
                    verify_minisig(manifest_bytes, store.read_bytes(entry["manifest"] + ".minisig")[0].decode(), public)
                except SignatureError as err:
                    problems.append((job, f"manifest signature: {err}"))
            blob = f"blobs/sha256/{entry['engine']['sha256']}"
            local = Path(tmp) / "engine"
            try:
                store.download_file(blob, local)
            except NotFound:
                problems.append((job, f"engine {blob} is missing"))
                continue
            digest = hashlib.sha256(local.read_bytes()).hexdigest()
            if digest != entry["engine"]["sha256"]:
                problems.append((job, f"engine {blob} is corrupted (sha256 {digest[:12]}...)"))
    if problems:
        ctx.output.console.print(table(f"{project} {version}: {len(problems)} problems", ("where", "problem"), problems))
        return ExitCode.JOBS_FAILED
    if ctx.args.save:
        _save(Path(ctx.args.save), {"index.json": data, "index.json.minisig": signature.encode()})
    ctx.output.console.print(f"{project} {version}: signature valid, {len(index['entries'])} engines present and "
                             "intact" + (f"; index and signature saved to {ctx.args.save}" if ctx.args.save else ""),
                             markup=False)
    return 0


def _planned_jobs(ctx: RunContext) -> list[str]:
    from fleetbuild.models.onnxinfo import OnnxInspector
    from fleetbuild.plan.planner import make_plan
    from fleetbuild.config.selectors import Selector

    plan = make_plan(ctx.config(), ctx.plugins(), Selector(), OnnxInspector(ctx.cache_dir))
    return [p.job.id for p in plan.jobs if p.ok]


def _save(directory: Path, files: dict[str, bytes]) -> None:
    import os

    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            tmp = directory / f".{name}.tmp-{os.getpid()}"
            tmp.write_bytes(data)
            os.replace(tmp, directory / name)
    except OSError as err:
        raise EnvironmentProblem(f"--save {directory}: cannot write: {err.strerror or err}") from None


def run_export(ctx: RunContext) -> int:
    from fleetbuild.remote.choose import DEFAULT_PREFERENCE
    from fleetbuild.store.export import checked_index, export_triton

    config, store = _store(ctx)
    index = checked_index(store, config.project.name, ctx.args.version, ctx.public_key(config),
                          ctx.args.allow_unsigned)
    order = [p.strip() for p in ctx.args.precision.split(",")] if ctx.args.precision else list(DEFAULT_PREFERENCE)
    out = Path(ctx.args.out)
    done = export_triton(store, index, order, out, {t.name: t.arch for t in config.targets})
    ctx.output.console.print(table(f"{index['project']} {index['version']} as a Triton model repository in {out}",
                                   ("model", "CC", "job", "file"), done.rows))
    if done.notes:
        ctx.output.console.print(f"its engines need plugin libraries: see {done.notes}", markup=False, highlight=False)
    return 0


def run_gc(ctx: RunContext) -> int:
    from fleetbuild.store.gc import plan_gc, run_gc as delete

    config, store = _store(ctx)
    if ctx.args.keep_releases is not None and ctx.args.keep_releases < 1:
        raise UsageError("--keep-releases must be at least 1")
    plan = plan_gc(store, ctx.args.grace_hours, ctx.args.keep_releases)
    if not ctx.args.dry_run:
        delete(store, plan)
    say = ctx.output.console.print
    for prefix in plan.releases:
        say(("would remove release " if ctx.args.dry_run else "removed release ") + prefix.split("/", 1)[1].rstrip("/"),
            markup=False)
    for key in plan.blobs:
        say(("would delete " if ctx.args.dry_run else "deleted ") + key, markup=False)
    for key in plan.unreadable_manifests:
        ctx.output.err.print(f"fleetbuild: warning: {key} is not a readable manifest: it protects no engine "
                             "(engines of kept releases are kept anyway)", markup=False, highlight=False)
    say(f"{len(plan.blobs)} unreferenced engines {'to delete' if ctx.args.dry_run else 'deleted'}, "
        f"{plan.kept_blobs} kept", markup=False)
    return 0


def _date(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(timestamp))
