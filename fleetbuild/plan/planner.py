"""Planning: config -> jobs -> per-job compatibility problems and build-key parts.

Inspection work is done once per model (ONNX, calibration files), never once per job, so a
10,000-job matrix of 100 models plans in well under a second once ONNX facts are cached.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from fleetbuild.remote.buildkey import build_key
from fleetbuild.plan.built import BuiltGraphs
from fleetbuild.plan.layers import LayerProvider
from fleetbuild.plan.problems import JobContext, Problem
from fleetbuild.config.fleet import FleetConfig, ModelSpec
from fleetbuild.filehash import FileHasher
from fleetbuild.config.matrix import Job, jobs_from_config
from fleetbuild.models.onnxinfo import OnnxError, OnnxInfo, OnnxInspector, external_data_path
from fleetbuild.config.selectors import Selector
from fleetbuild.config.targets import Target


class PlanRules(Protocol):
    """What the planner asks of the plugins (fleetbuild.plugin.manager.Plugins is one): the custom
    layer providers, and every rule's problems for one job. Handed in, so the planner never imports
    the plugin manager."""

    def layer_providers(self, config: Any) -> Mapping[str, LayerProvider]: ...

    def check_job(self, ctx: JobContext) -> list[Problem]: ...


@dataclass(frozen=True)
class PlannedJob:
    job: Job
    target: Target
    problems: tuple[Problem, ...]
    key_parts: Mapping[str, Any] | None        # None when the model could not be inspected
    layers: tuple[Mapping[str, Any], ...] = ()   # per provider: the libraries a host may load
    trial: Mapping[str, Any] | None = None       # matrix plan --trial: {"verdict", "text", "tool"}

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "invalid"

    @property
    def plan_key(self) -> str | None:
        return build_key(self.key_parts) if self.key_parts is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.job.id, "model": self.job.model, "target": self.job.target,
            "precision": self.job.precision, "variant": self.job.variant, "status": self.status,
            "compute_capability": self.target.compute_capability,
            "options": self.job.options.as_dict(), "plan_key": self.plan_key,
            "problems": [{"code": p.code, "severity": p.severity, "message": p.message, "hint": p.hint}
                         for p in self.problems],
            "layers": [dict(entry) for entry in self.layers],
            **({"trial": dict(self.trial)} if self.trial is not None else {}),
        }


@dataclass(frozen=True)
class Plan:
    config: FleetConfig
    jobs: tuple[PlannedJob, ...]
    total: int                       # jobs in the matrix before --only/--skip
    layers: Mapping[str, LayerProvider] = field(default_factory=dict)    # custom layer providers by name

    @property
    def invalid(self) -> list[PlannedJob]:
        return [j for j in self.jobs if not j.ok]

    def to_json(self) -> dict[str, Any]:
        return {"project": {"name": self.config.project.name, "version": self.config.project.version},
                "config": str(self.config.path), "total": self.total, "selected": len(self.jobs),
                "invalid": len(self.invalid), "jobs": [j.to_json() for j in self.jobs]}


@dataclass(frozen=True)
class ModelFacts:
    info: OnnxInfo | None
    error: OnnxError | None
    calibration: tuple[Path, ...]
    calibration_digest: str | None
    external_data: tuple[tuple[str, str | None], ...] = ()     # (location, sha256 or None when missing)

    @property
    def content_digest(self) -> str | None:
        """The model's content: its .onnx file's sha256, combined with its external-data files' when
        it has any (the weights can change under an unchanged graph file)."""
        if self.info is None or not self.external_data:
            return self.info.sha256 if self.info else None
        return build_key({"onnx": self.info.sha256, "external_data": [list(e) for e in self.external_data]})


def ignoring(plan: Plan, codes: set[str]) -> Plan:
    """`plan` with the errors whose code is in `codes` (or every code, for "all") turned into warnings
    that say so: `matrix build --ignore-plan CODE` builds what those rules refused, to hold them
    against the builder."""
    import dataclasses

    def ignored(problem: Problem) -> Problem:
        if problem.severity != "error" or not ("all" in codes or problem.code in codes):
            return problem
        return dataclasses.replace(problem, severity="warning", message="ignored (--ignore-plan): " + problem.message)
    return dataclasses.replace(plan, jobs=tuple(dataclasses.replace(j, problems=tuple(ignored(p) for p in j.problems))
                                                for j in plan.jobs))


def make_plan(config: FleetConfig, rules: PlanRules, selector: Selector,
              inspector: OnnxInspector, check_shapes: bool = False) -> Plan:
    """The selected jobs with their problems. `check_shapes` also runs each model in ONNX Runtime
    at its profile's shapes (once per model; cached) for the shape-run rule."""
    all_jobs = jobs_from_config(config)
    jobs = selector.apply(all_jobs, key=lambda j: j.id)
    layers = rules.layer_providers(config)
    facts: dict[str, ModelFacts] = {}
    built = BuiltGraphs(inspector)
    shape_runs: dict[str, list] = {}
    planned = []
    for job in jobs:
        model = config.models[job.model]
        if job.model not in facts:
            facts[job.model] = model_facts(config, model, inspector.hasher, inspector)
            if check_shapes and facts[job.model].info is not None:
                from fleetbuild.models.shapecheck import check_model

                shape_runs[job.model] = check_model(model.onnx, facts[job.model].info, model.inputs,
                                                    inspector.cache_root)
        mf = facts[job.model]
        target = config.targets[job.target]
        converted, conversion_problems = built.for_job(job, target, model, mf)
        ctx = JobContext(job=job, target=target, model=model, onnx=mf.info, onnx_error=mf.error,
                         layers=layers, calibration_files=mf.calibration,
                         model_shown=model.onnx_as_written,
                         extra={"shape_runs": shape_runs[job.model]} if job.model in shape_runs else {},
                         built=converted)
        problems = tuple(rules.check_job(ctx)) + conversion_problems
        parts = _key_parts(job, target, model, mf, layers, inspector.hasher) if mf.info is not None else None
        planned.append(PlannedJob(job=job, target=target, problems=problems, key_parts=parts,
                                  layers=_layer_choices(model, target, layers, inspector.hasher)))
    return Plan(config=config, jobs=tuple(planned), total=len(all_jobs), layers=layers)


def model_facts(config: FleetConfig, model: ModelSpec, hasher: FileHasher,
                inspector: OnnxInspector) -> ModelFacts:
    """A model's ONNX facts (or its error) and its calibration files with their combined digest."""
    info, error = None, None
    try:
        info = inspector.inspect(model.onnx)
    except OnnxError as err:
        error = err
    files: tuple[Path, ...] = ()
    digest = None
    if model.calibration:
        pattern = os.path.join(glob.escape(str(config.root)), model.calibration)
        files = tuple(sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)))
        if files:
            digest = build_key({"calibration": [[str(p.relative_to(config.root)) if p.is_relative_to(
                config.root) else str(p), hasher.sha256(p)] for p in files]})
    external = []
    for data in info.external_data if info else ():
        path = external_data_path(model.onnx, data.location)
        external.append((data.location, hasher.sha256(path) if path is not None and path.is_file() else None))
    return ModelFacts(info, error, files, digest, tuple(external))


def _layer_choices(model: ModelSpec, target: Target, layers: Mapping[str, LayerProvider],
                   hasher: Any) -> tuple[dict[str, Any], ...]:
    """What `matrix plan --json` shows per provider: the library installed on the hosts, or the
    libraries of the target's arch and TensorRT range (the host's TensorRT picks one at build)."""
    from fleetbuild.plan.layers import candidates

    shown = []
    for name in model.layers:
        provider = layers.get(name)
        if provider is None:
            continue
        if not provider.libraries:
            shown.append({"provider": name, "host_library": provider.library})
            continue
        shown.append({"provider": name, "libraries": [
            {"path": str(lib.path), "sha256": hasher.sha256(lib.path), "arch": lib.arch, "tensorrt": lib.tensorrt,
             "registration": lib.registration} for lib in candidates(provider, target)]})
    return tuple(shown)


def _key_parts(job: Job, target: Target, model: ModelSpec, mf: ModelFacts,
               layers: Mapping[str, LayerProvider], hasher: Any) -> dict[str, Any]:
    from fleetbuild.plan.layers import key_entry

    assert mf.info is not None
    return {
        "onnx_sha256": mf.info.sha256,
        **({"external_data": [list(e) for e in mf.external_data]} if mf.external_data else {}),
        "inputs": {name: [list(p.min), list(p.opt), list(p.max)] for name, p in sorted(model.inputs.items())},
        "precision": job.precision,
        "options": job.options.as_dict(),
        "target": {"name": target.name, "compute_capability": target.compute_capability},
        "calibration": mf.calibration_digest if job.precision == "int8" else None,
        "layers": [[name, key_entry(layers[name], target, hasher)] for name in model.layers if name in layers],
    }
