"""`fleetbuild matrix plan`: the jobs of the matrix and whether each can be built."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from fleetbuild.commands import add_inventory_option, add_json_option
from fleetbuild.context import RunContext
from fleetbuild.errors import ExitCode
from fleetbuild.onnxinfo import OnnxInspector
from fleetbuild.plan import make_plan
from fleetbuild.selectors import Selector


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    matrix = subparsers.add_parser("matrix", help="plan and build the model x target matrix",
                                   description="Plan and build the model x target matrix of fleet.toml.",
                                   parents=[common])
    actions = matrix.add_subparsers(dest="action", metavar="ACTION", required=True)
    plan = actions.add_parser(
        "plan", parents=[common], help="list the jobs and check each one (no GPU needed)",
        description="Expand the matrix, inspect the models and check every job against its target. "
                    "Exit code 1 when any selected job is invalid.")
    add_selection(plan)
    add_json_option(plan, "the plan as JSON")
    plan.add_argument("--all", action="store_true",
                      help="list every job (by default a plan of more than 100 jobs lists only jobs with problems)")
    plan.set_defaults(func=run_plan)
    build = actions.add_parser(
        "build", parents=[common], help="build the matrix on the inventory's hosts",
        description="Probe the hosts of each target's inventory group, check every job against them, "
                    "build over Ansible, fetch and verify the engines and store them. Exit code 1 when any "
                    "selected job is invalid or failed.")
    add_selection(build)
    add_inventory_option(build)
    add_json_option(build, "the results as JSON")
    build.add_argument("--rebuild", nargs="?", const="*", metavar="PATTERN", action="append",
                       help="build again even when the store has the engine (all jobs, or those matching PATTERN)")
    build.add_argument("--publish", action="store_true", help="publish the release when every job is built or cached")
    build.add_argument("--version", dest="release_version", metavar="V",
                       help="release version for --publish (default: [project] version)")
    build.add_argument("--channel", metavar="NAME", help="with --publish: point channel NAME at this version")
    build.add_argument("--force", action="store_true", help="with --publish: replace jobs already in the version")
    build.add_argument("--facts-max-age", type=float, default=3600, metavar="SECONDS",
                       help="use cached host facts younger than this to look up the build cache (default 3600); "
                            "hosts are probed again whenever something has to be built")
    build.set_defaults(func=run_build)
    stage = actions.add_parser(
        "stage", parents=[common], help="write worker specs and inputs for building by hand",
        description="Write each selected valid job's spec.json, its inputs (converted to fp16 / Q/DQ int8 "
                    "for strongly typed builders) and the worker zipapp into DIR. Copy DIR to a build host "
                    "and run: python3 fleetbuild-remote.pyz build --spec jobs/M/T/P/spec.json --out jobs/M/T/P/out")
    add_selection(stage)
    stage.add_argument("--out", required=True, metavar="DIR", help="staging directory")
    stage.set_defaults(func=run_stage)


def add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="only jobs matching PATTERN (fnmatch over model/target/precision[+variant], "
                             "{a,b} alternatives; a pattern without '/' matches one component, e.g. "
                             "'nano' or 'fp16'); repeatable")
    parser.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                        help="leave out jobs matching PATTERN; repeatable")


@dataclass
class BuildSetup:
    """What `matrix build` and `publish` both start from."""

    config: Any
    plugins: Any
    inventory: Any
    inspector: OnnxInspector
    plan: Any
    store: Any
    valid: list
    hosts: list          # the inventory hosts of the valid jobs' groups


def prepare_build(ctx: RunContext) -> BuildSetup:
    config, plugins = ctx.config(), ctx.plugins()
    inventory = ctx.inventory(config)
    inspector = OnnxInspector(ctx.cache_dir)
    plan = make_plan(config, plugins, Selector(ctx.args.only, ctx.args.skip), inspector)
    valid = [p for p in plan.jobs if p.ok]
    groups = {p.target.inventory_group for p in valid}
    hosts = [h for h in inventory.hosts.values() if groups.intersection(h.groups)]
    return BuildSetup(config, plugins, inventory, inspector, plan, ctx.store(config), valid, hosts)


def run_build(ctx: RunContext) -> int:
    from fleetbuild.dispatch.run import Dispatcher, JobResult
    from fleetbuild.report import build_summary

    setup = prepare_build(ctx)
    config, plugins, inventory, inspector, plan, store = (setup.config, setup.plugins, setup.inventory,
                                                         setup.inspector, setup.plan, setup.store)
    results = [JobResult(p.job.id, p.target.name, "invalid", kind="invalid",
                         reason="; ".join(f"{x.code}: {x.text()}" for x in p.problems if x.severity == "error"))
               for p in plan.invalid]
    valid, hosts = setup.valid, setup.hosts
    if valid:
        import contextlib

        from fleetbuild.dispatch.progress import LiveProgress

        lines = {"notify": lambda line: ctx.output.err.print(line, markup=False, highlight=False)}
        dispatcher = Dispatcher(plan, plugins, inventory, store, ctx.cache_dir, ctx.env, inspector,
                                lambda line: lines["notify"](line))
        dispatcher.signer = ctx.signer(config)
        rebuild = Selector(ctx.args.rebuild) if ctx.args.rebuild else None
        try:
            probed = hosts and dispatcher.load_cached(hosts, ctx.args.facts_max_age) is None
            if probed:
                _probe(dispatcher, hosts, lines["notify"])
            hits, misses = dispatcher.cached(valid, rebuild)
            results += hits
            if misses:
                if hosts and not probed:            # facts from the cache: refresh them before building
                    _probe(dispatcher, hosts, lines["notify"])
                live = LiveProgress(dispatcher, ctx.output.err) if ctx.output.err.is_terminal else None
                with live or contextlib.nullcontext():
                    if live is not None:
                        lines["notify"] = live.notify
                    results += dispatcher.build(misses)
        finally:
            dispatcher.close()
    order = {p.job.id: i for i, p in enumerate(plan.jobs)}
    results.sort(key=lambda r: order.get(r.job_id, 0))
    build_summary(ctx.output, results)
    if ctx.args.publish and results and all(r.status in ("built", "cached") for r in results):
        from fleetbuild.commands.publish import publish_release

        publish_release(ctx, config, plugins, store, plan, dispatcher.manifests,
                        ctx.args.release_version or config.project.version, ctx.args.channel, ctx.args.force)
    elif ctx.args.publish:
        ctx.output.err.print("not published: some jobs were not built", markup=False)
    if any(r.kind == "interrupted" for r in results):
        return ExitCode.INTERRUPTED
    return ExitCode.OK if all(r.status in ("built", "cached") for r in results) else ExitCode.JOBS_FAILED


def _probe(dispatcher, hosts, notify) -> None:
    for name, state in dispatcher.probe(hosts).items():
        if state.problem:
            notify(f"host {name} left out: {state.problem}")


def run_stage(ctx: RunContext) -> int:
    from pathlib import Path

    from fleetbuild.staging import Stager

    config, plugins = ctx.config(), ctx.plugins()
    inspector = OnnxInspector(ctx.cache_dir)
    plan = make_plan(config, plugins, Selector(ctx.args.only, ctx.args.skip), inspector)
    for planned in plan.invalid:
        reason = next(p for p in planned.problems if p.severity == "error")
        ctx.output.err.print(f"not staged: {planned.job.id}: {reason.code}: {reason.text()}", markup=False)
    valid = [j for j in plan.jobs if j.ok]
    staged = Stager(plan, Path(ctx.args.out), ctx.cache_dir, inspector).stage(valid)
    for job in staged:
        ctx.output.console.print(f"staged {job.job_id}: {job.spec}", markup=False)
    ctx.output.console.print(f"{len(staged)} jobs staged in {ctx.args.out}; on a host: python3 "
                             f"fleetbuild-remote.pyz build --spec jobs/.../spec.json --out jobs/.../out", markup=False)
    return ExitCode.JOBS_FAILED if plan.invalid else ExitCode.OK


def run_plan(ctx: RunContext) -> int:
    config = ctx.config()
    plugins = ctx.plugins()
    plan = make_plan(config, plugins, Selector(ctx.args.only, ctx.args.skip), OnnxInspector(ctx.cache_dir))
    for reporter in plugins.reporters(config, ctx.output):
        reporter.plan_ready(plan)
    return ExitCode.JOBS_FAILED if plan.invalid else ExitCode.OK
