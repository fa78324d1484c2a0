"""`fleetbuild matrix plan|build|stage`: adapters over fleetbuild.build.pipeline."""
from __future__ import annotations

import argparse

from fleetbuild.build import pipeline
from fleetbuild.commands import (add_inventory_option, add_json_option, add_keep_connections_option, add_local_option,
                                 add_report_option, add_selection, selection)
from fleetbuild.context import RunContext
from fleetbuild.config.names import channel_argument, version_argument
from fleetbuild.errors import ExitCode, FleetbuildError
from fleetbuild.report.results import RunSummary
from fleetbuild.config.selectors import Selector


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
    add_report_option(plan)
    add_check_shapes_option(plan)
    plan.add_argument("--trial", action="store_true",
                      help="also build each TensorRT-RTX job on this machine (CPU only, cached by content): a job the "
                           "rules pass and the builder refuses becomes invalid (trial-failed)")
    plan.add_argument("--all", action="store_true",
                      help="list every job (by default a plan of more than 100 jobs lists only jobs with problems)")
    plan.set_defaults(func=run_plan)
    build = actions.add_parser(
        "build", parents=[common], help="build the matrix on the inventory's hosts",
        description="Probe the hosts of each target's inventory group, check every job against them, "
                    "build on them over SSH, fetch and verify the engines and store them. Exit code 1 when any "
                    "selected job is invalid or failed.")
    add_selection(build)
    add_inventory_option(build)
    add_local_option(build)
    add_json_option(build, "the results as JSON")
    add_report_option(build)
    add_check_shapes_option(build)
    build.add_argument("--rebuild", nargs="?", const="*", metavar="PATTERN", action="append",
                       help="build again even when the store has the engine (all jobs, or those matching PATTERN)")
    build.add_argument("--verify", action="store_true",
                       help="hash every cached engine in full before reusing it (a local store always does; "
                            "S3 checks sizes and recorded checksums otherwise)")
    build.add_argument("--publish", action="store_true", help="publish the release when every job is built or cached")
    build.add_argument("--version", dest="release_version", metavar="V", type=version_argument,
                       help="release version for --publish (default: [project] version)")
    build.add_argument("--channel", metavar="NAME", type=channel_argument,
                       help="with --publish: point channel NAME at this version")
    build.add_argument("--force", action="store_true", help="with --publish: replace jobs already in the version")
    build.add_argument("--facts-max-age", type=float, default=3600, metavar="SECONDS",
                       help="use cached host facts younger than this to look up the build cache (default 3600); "
                            "hosts are probed again whenever something has to be built")
    add_keep_connections_option(build, "build hosts")
    build.add_argument("--ignore-plan", action="append", metavar="CODE",
                       help="build the jobs a plan rule refused anyway (repeatable; 'all' for every rule): holds a "
                            "rule against the builder (bench/plan_truth.py counts false refusals this way)")
    build.set_defaults(func=run_build)
    measure = actions.add_parser(
        "accuracy", parents=[common], help="measure how far fp16 / int8 move each model's outputs",
        description="Run the fp32 model and the job's converted model (fp16, Q/DQ int8) in ONNX Runtime on the "
                    "calibration data (or seeded random inputs at the opt shape) and report per output the max abs "
                    "error, mean relative error and cosine similarity. Jobs of builder-flag precisions (TensorRT "
                    "<= 10) show the same figure as an estimate. Exit code 1 when a job misses its model's "
                    "tolerance.")
    add_selection(measure)
    add_json_option(measure, "the figures as JSON")
    add_report_option(measure)
    measure.set_defaults(func=run_accuracy)
    stage = actions.add_parser(
        "stage", parents=[common], help="write worker specs and inputs for building by hand",
        description="Write each selected valid job's spec.json, its inputs (converted to fp16 / Q/DQ int8 "
                    "for strongly typed builders) and the worker zipapp into DIR. Copy DIR to a build host "
                    "and run: python3 fleetbuild-remote.pyz build --spec jobs/M/T/P/spec.json --out jobs/M/T/P/out")
    add_selection(stage)
    stage.add_argument("--out", required=True, metavar="DIR", help="staging directory")
    stage.set_defaults(func=run_stage)


def add_check_shapes_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check-shapes", action="store_true",
                        help="also run each model in ONNX Runtime (CPU) at its profile's min, opt and max shapes "
                             "with seeded random data (cached); a shape the model cannot run makes its jobs invalid")


def run_plan(ctx: RunContext) -> int:
    summary = pipeline.plan_matrix(ctx, selection(ctx), ctx.args.check_shapes, ctx.args.trial)
    return ExitCode.OK if summary.ok else ExitCode.JOBS_FAILED


def run_build(ctx: RunContext) -> int:
    args = ctx.args
    setup = pipeline.prepare_build(ctx, selection(ctx), ctx.inventory(ctx.config()), args.check_shapes,
                                   set(args.ignore_plan or ()))
    events = pipeline.events_for(ctx, setup.config)
    events.plan_ready(setup.plan)
    outcome = pipeline.build(ctx, setup, events, Selector(args.rebuild) if args.rebuild else None,
                             args.facts_max_age, args.verify, keep_connections=args.keep_connections)
    summary = RunSummary("build", setup.plan, outcome.results)
    publish_error: FleetbuildError | None = None
    if args.publish and summary.ok and outcome.results:
        try:
            release = pipeline.publish_release(ctx, setup, outcome.manifests,
                                               args.release_version or setup.config.project.version,
                                               args.channel, args.force)
            summary = RunSummary("build", setup.plan, outcome.results, release)
            events.notice(pipeline.release_line(release))
        except FleetbuildError as err:      # the summary (and CI outputs) still describe the build
            publish_error = err
    elif args.publish:
        events.notice("not published: some jobs were not built")
    events.run_finished(summary)
    if publish_error is not None:
        raise publish_error
    if outcome.store_error is not None:         # one message and exit 4, after every job's row
        raise outcome.store_error
    if any(r.kind == "interrupted" for r in outcome.results):
        return ExitCode.INTERRUPTED
    return ExitCode.OK if summary.ok else ExitCode.JOBS_FAILED


def run_accuracy(ctx: RunContext) -> int:
    from fleetbuild.models.onnxinfo import OnnxInspector
    from fleetbuild.plan.planner import make_plan
    from fleetbuild.report.accuracy import AccuracyProgress, report_accuracy

    inspector = OnnxInspector(ctx.cache_dir)
    plan = make_plan(ctx.config(), ctx.plugins(), selection(ctx), inspector)
    with AccuracyProgress(ctx.output, len(plan.jobs)) as progress:
        results = pipeline.accuracy(ctx, plan, inspector, list(plan.jobs), progress.advance)
    report_accuracy(ctx.output, plan, results)
    return ExitCode.JOBS_FAILED if any(r.verdict in ("miss", "error") for r in results) else ExitCode.OK


def run_stage(ctx: RunContext) -> int:
    from pathlib import Path

    from fleetbuild.models.onnxinfo import OnnxInspector
    from fleetbuild.plan.planner import make_plan
    from fleetbuild.build.staging import Stager

    config, plugins = ctx.config(), ctx.plugins()
    inspector = OnnxInspector(ctx.cache_dir)
    plan = make_plan(config, plugins, selection(ctx), inspector)
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
