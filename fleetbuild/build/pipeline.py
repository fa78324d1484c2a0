"""The work under the commands: plan, prepare, build and publish a matrix.

Commands parse arguments and call these; every outcome reaches the user through the reporters'
events (see report/events.py), never through a print here. Nothing in this module reads the command line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from fleetbuild.errors import EnvironmentProblem
from fleetbuild.models.onnxinfo import OnnxInspector
from fleetbuild.plan.planner import Plan, PlannedJob, make_plan
from fleetbuild.report.events import Events
from fleetbuild.report.results import JobResult, Release, RunSummary
from fleetbuild.config.selectors import Selector

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.config.fleet import FleetConfig
    from fleetbuild.context import RunContext
    from fleetbuild.build.hosts import Host, Inventory
    from fleetbuild.plugin.manager import Plugins
    from fleetbuild.store.api import ArtifactStore


def events_for(ctx: "RunContext", config: "FleetConfig | None") -> Events:
    """The run's reporters (built-in and plugins') behind one event stream."""
    return Events(ctx.plugins().reporters(config, ctx.output))


def plan_matrix(ctx: "RunContext", selector: Selector, check_shapes: bool = False, trial: bool = False) -> RunSummary:
    """`matrix plan`: plan the selected jobs (each TensorRT-RTX job built on the controller too, with
    `trial`) and report the plan."""
    config = ctx.config()
    events = events_for(ctx, config)
    inspector = OnnxInspector(ctx.cache_dir)
    plan = make_plan(config, ctx.plugins(), selector, inspector, check_shapes)
    if trial:
        from fleetbuild.build.trial import try_jobs

        plan = try_jobs(plan, ctx.cache_dir, inspector)
    events.plan_ready(plan)
    summary = RunSummary("plan", plan)
    events.run_finished(summary)
    return summary


@dataclass(frozen=True)
class BuildSetup:
    """What `matrix build` and `publish` both start from."""

    config: "FleetConfig"
    plugins: "Plugins"
    inventory: "Inventory"
    inspector: OnnxInspector
    plan: Plan
    store: "ArtifactStore"

    @property
    def valid(self) -> list[PlannedJob]:
        return [p for p in self.plan.jobs if p.ok]

    @property
    def hosts(self) -> list["Host"]:
        """The inventory hosts of the valid jobs' groups."""
        groups = {p.target.inventory_group for p in self.valid}
        return [h for h in self.inventory.hosts.values() if groups.intersection(h.groups)]


def prepare_build(ctx: "RunContext", selector: Selector, inventory: "Inventory",
                  check_shapes: bool = False, ignore: set[str] | None = None) -> BuildSetup:
    """The plan and what a build needs; `ignore`: plan codes whose refusals are built anyway."""
    config, plugins = ctx.config(), ctx.plugins()
    inspector = OnnxInspector(ctx.cache_dir)
    plan = make_plan(config, plugins, selector, inspector, check_shapes)
    if ignore:
        from fleetbuild.plan.planner import ignoring

        plan = ignoring(plan, ignore)
    return BuildSetup(config, plugins, inventory, inspector, plan, ctx.store(config))


@dataclass(frozen=True)
class BuildOutcome:
    results: list[JobResult]
    manifests: Mapping[str, Mapping[str, Any]]          # job id -> manifest, cached or built
    store_error: Exception | None = None                # the store refused an engine: the run stopped there


def build(ctx: "RunContext", setup: BuildSetup, events: Events, rebuild: Selector | None = None,
          facts_max_age: float = 3600, verify: bool = False, keep_connections: bool = False) -> BuildOutcome:
    """Build every valid job not already in the store; results in plan order (invalid jobs included).
    The run's SSH connections are closed at the end unless `keep_connections`."""
    from fleetbuild.build.dispatch.run import Dispatcher

    plan = setup.plan
    results = [JobResult(p.job.id, p.target.name, "invalid", kind="invalid",
                         reason="; ".join(f"{x.code}: {x.text()}" for x in p.problems if x.severity == "error"))
               for p in plan.invalid]
    manifests: Mapping[str, Mapping[str, Any]] = {}
    store_error = None
    valid, hosts = setup.valid, setup.hosts
    misses, valid = accuracy_gate(ctx, setup, valid, events)
    results += misses
    if valid:
        dispatcher = Dispatcher(plan, setup.plugins, setup.inventory, setup.store, ctx.cache_dir, ctx.env,
                                setup.inspector, events)
        dispatcher.cache.signer = ctx.signer(setup.config)
        dispatcher.cache.verify = verify
        try:
            try:
                probed = bool(hosts) and dispatcher.load_cached(hosts, facts_max_age) is None
                if probed:
                    _probe(dispatcher, hosts, events)
                hits, misses = dispatcher.cached(valid, rebuild)
                if misses and hosts and not probed:   # facts from the cache: refresh them before building
                    _probe(dispatcher, hosts, events)
            except KeyboardInterrupt:               # nothing started yet: every valid job says so
                results += [JobResult(p.job.id, p.target.name, "failed", kind="interrupted",
                                      reason="not started: interrupted") for p in valid]
                hits, misses = [], []
            results += hits
            if misses:
                events.build_started(dispatcher)
                try:
                    results += dispatcher.build(misses)
                finally:
                    events.build_ended()
        finally:
            dispatcher.close(keep_connections)
        manifests, store_error = dispatcher.manifests, dispatcher.store_error
    order = {p.job.id: i for i, p in enumerate(plan.jobs)}
    results.sort(key=lambda r: order.get(r.job_id, 0))
    return BuildOutcome(results, manifests, store_error)


def accuracy(ctx: "RunContext", plan: Plan, inspector: OnnxInspector, jobs: list[PlannedJob],
             progress: Any = None) -> list[Any]:
    """Measured accuracy of `jobs` (see accuracy.py); `progress(job_id)` is called before each job."""
    from fleetbuild.plan.accuracy import measure_jobs
    from fleetbuild.plan.planner import model_facts

    config = plan.config
    facts = {name: model_facts(config, config.models[name], inspector.hasher, inspector)
             for name in dict.fromkeys(p.job.model for p in jobs)}
    return measure_jobs(plan, jobs, ctx.cache_dir, facts, progress or (lambda job_id: None))


def accuracy_gate(ctx: "RunContext", setup: BuildSetup, jobs: list[PlannedJob],
                  events: Events) -> tuple[list[JobResult], list[PlannedJob]]:
    """Jobs whose model has a tolerance are measured before they are built (or taken from the
    cache): (failed results for the misses, the jobs that may go on)."""
    from fleetbuild.plan.accuracy import measurable

    checked = [p for p in jobs if setup.config.models[p.job.model].tolerance is not None and measurable(p)]
    if not checked:
        return [], jobs
    events.notice(f"measuring accuracy of {len(checked)} jobs against their tolerance")
    failed = {}
    for measured in accuracy(ctx, setup.plan, setup.inspector, checked):
        if measured.verdict in ("miss", "error"):
            failed[measured.job_id] = JobResult(
                measured.job_id, measured.job_id.split("/")[1], "failed", kind="accuracy",
                reason=f"{measured.precision} accuracy: {measured.reason}")
    return list(failed.values()), [p for p in jobs if p.job.id not in failed]


def _probe(dispatcher: Any, hosts: list["Host"], events: Events) -> None:
    for name, state in dispatcher.probe(hosts).items():
        if state.problem:
            events.notice(f"host {name} left out: {state.problem}")


def find_in_store(ctx: "RunContext", setup: BuildSetup, facts_max_age: float, events: Events | None = None) -> tuple[
        Mapping[str, Mapping[str, Any]], list[PlannedJob]]:
    """The manifests of the valid jobs already in the store, and the jobs that are not."""
    from fleetbuild.build.dispatch.run import Dispatcher

    dispatcher = Dispatcher(setup.plan, setup.plugins, setup.inventory, setup.store, ctx.cache_dir, ctx.env,
                            setup.inspector, events)
    try:
        if setup.hosts and dispatcher.load_cached(setup.hosts, facts_max_age) is None:
            dispatcher.probe(setup.hosts)
        _, missing = dispatcher.cached(setup.valid)
    finally:
        dispatcher.close()
    return dispatcher.manifests, missing


def publish_release(ctx: "RunContext", setup: BuildSetup, manifests: Mapping[str, Mapping[str, Any]],
                    version: str, channel: str | None, force: bool) -> Release:
    """Write (merge into) the release index of `version`, signed when a key is configured, and point
    `channel` at it."""
    from fleetbuild.build.golden import GoldenSamples
    from fleetbuild.models.onnxinfo import OnnxInspector
    from fleetbuild.store.publish import entry_blobs, entry_for, publish, release_prefix, set_channel

    from fleetbuild.store.blobs import check_blob

    config, plan, store = setup.config, setup.plan, setup.store
    signer = ctx.signer(config)
    entries = {p.job.id: entry_for(p, manifests[p.job.id]) for p in plan.jobs if p.job.id in manifests}
    golden = GoldenSamples(config, store, OnnxInspector(ctx.cache_dir))
    for planned in plan.jobs:                    # what each device's health gate runs through its engine
        if planned.job.id in entries:
            samples = golden.entry(planned.job.model, planned.job.precision)
            if samples is not None:
                entries[planned.job.id]["golden"] = samples
    for job_id, entry in entries.items():       # nothing is signed that was not hashed just now
        for sha256, size, what in entry_blobs(entry):
            problem = check_blob(store, sha256, size, full=True)
            if problem is not None:
                raise PublishRefused(f"not published: the stored {what} of {job_id} is "
                                     f"{'missing' if problem == 'missing' else 'corrupted: ' + problem}; "
                                     f"rebuild it with `fleetbuild matrix build --only {job_id}`")
    index = publish(store, config.project.name, version, entries, signer, config.signing.expires_days, force)
    setup.plugins.after_publish(index)
    if channel:
        set_channel(store, config.project.name, channel, index, signer)
    key = f"{release_prefix(config.project.name, version)}/index.json"
    return Release(index=index, key=key, url=f"{store.url.rstrip('/')}/{key}", channel=channel,
                   signed=signer is not None)


class PublishRefused(EnvironmentProblem):
    """A release would name an engine that is not what was built."""


def release_line(release: Release) -> str:
    """The one line that says what was published."""
    index, signed = release.index, release.signed
    return (f"published {index['project']} {index['version']} (sequence {index['sequence']}, "
            f"{len(index['entries'])} jobs{', signed' if signed else ', UNSIGNED: no signing key'})"
            + (f"; channel {release.channel} -> {index['version']}" if release.channel else ""))

