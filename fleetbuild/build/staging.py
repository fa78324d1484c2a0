"""Staging: turn planned jobs into worker specs plus their inputs, in a directory a host can use.

Layout (paths inside specs are relative, so the directory can be copied anywhere):
    fleetbuild-remote.pyz
    inputs/<sha256>/<model>.onnx (+ its external-data files)   each model once, by content
    inputs/calibration/<sha256>.npy|npz
    jobs/<model>/<target>/<precision[+variant]>/spec.json
On a host: python3 fleetbuild-remote.pyz build --spec jobs/.../spec.json --out jobs/.../out
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from fleetbuild.build.bundle import build_zipapp
from fleetbuild.models.dims import renames
from fleetbuild.filehash import FileHasher
from fleetbuild.models.onnxinfo import OnnxInspector, external_data_path
from fleetbuild.plan.built import downgrade_to
from fleetbuild.plan.planner import ModelFacts, Plan, PlannedJob, model_facts
from fleetbuild.models.precision import ConvertedModels, needs_conversion
from fleetbuild.remote import PROTOCOL_VERSION
from fleetbuild.config.tensorrt_releases import strongly_typed

@dataclass(frozen=True)
class StagedJob:
    job_id: str
    spec: Path
    key_parts: Mapping[str, Any]
    inputs: tuple[Path, ...] = ()          # every local file the spec references


class Stager:
    def __init__(self, plan: Plan, out: Path, cache_dir: Path, inspector: OnnxInspector,
                 jobs_dir: str = "jobs", host_facts: Mapping[str, Any] | None = None) -> None:
        self.plan, self.out, self.cache_dir = plan, out, cache_dir
        self.jobs_dir, self.host_facts = jobs_dir, host_facts
        self.hasher: FileHasher = inspector.hasher
        self.inspector = inspector
        self.converted = ConvertedModels(cache_dir)
        self._models: dict[tuple, tuple[Path, str, list[str]]] = {}
        self._facts: dict[str, tuple[ModelFacts, list[Path]]] = {}

    def stage(self, jobs: Sequence[PlannedJob]) -> list[StagedJob]:
        self.out.mkdir(parents=True, exist_ok=True)
        build_zipapp(self.out)
        return [self.stage_job(job) for job in jobs]

    def key_parts(self, planned: PlannedJob) -> dict[str, Any]:
        """The job's build-key parts as the worker will see them (the converted model's hash for
        strongly typed builders), without writing a spec."""
        return self._prepare(planned)[0]

    def _prepare(self, planned: PlannedJob) -> tuple[dict[str, Any], Path, bool, list[Path], tuple, list[str]]:
        job, config = planned.job, self.plan.config
        model = config.models[job.model]
        if job.model not in self._facts:           # per model, not per job: globs and hashes once
            facts = model_facts(config, model, self.hasher, self.inspector)
            self._facts[job.model] = (facts, self._calibration(facts))
        facts, calibration = self._facts[job.model]
        typed = strongly_typed(job.options.backend, planned.target.tensorrt)
        renamed = renames(facts.info, model.inputs, job.options.rename_dynamic_dims) if facts.info else ()
        opset = downgrade_to(job, planned.target, facts.info)
        onnx_path, onnx_sha, notes = self._model(model.onnx, job.precision, typed, facts, renamed, opset)
        key_parts = dict(planned.key_parts or {})
        key_parts["onnx_sha256"] = onnx_sha
        return key_parts, onnx_path, typed, calibration, renamed, notes

    def stage_job(self, planned: PlannedJob) -> StagedJob:
        job, config = planned.job, self.plan.config
        model = config.models[job.model]
        key_parts, onnx_path, typed, calibration, renamed, notes = self._prepare(planned)
        job_dir = self.out / self.jobs_dir / job.model / job.target / (
            job.precision + (f"+{job.variant}" if job.variant else ""))
        job_dir.mkdir(parents=True, exist_ok=True)
        calib_for_worker = [] if typed else calibration     # typed builders take precision from the model
        spec = {
            "schema": PROTOCOL_VERSION, "job_id": job.id, "backend": job.options.backend,
            "precision": job.precision, "compute_capability": planned.target.compute_capability,
            "onnx": os.path.relpath(onnx_path, job_dir),
            "inputs": {name: {"min": list(p.min), "opt": list(p.opt), "max": list(p.max)}
                       for name, p in sorted(model.inputs.items())},
            "options": job.options.as_dict(),
            "calibration": [os.path.relpath(p, job_dir) for p in calib_for_worker],
            "calibration_cache": "calibration.cache" if calib_for_worker else None,
            "plugins": self._plugins(planned, job_dir),
            "timing_cache": os.path.relpath(self.out / "cache" / f"timing-{planned.target.name}.cache", job_dir),
            "key_parts": key_parts, "engine_name": "engine.plan",
            "rewrites": [{"input": r.input, "index": r.index, "from": r.old, "to": r.new} for r in renamed],
            "notes": notes,
        }
        if self.host_facts is not None:
            spec["host"] = dict(self.host_facts)
        spec_path = job_dir / "spec.json"
        tmp = spec_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, spec_path)
        inputs = [onnx_path] + [onnx_path.parent / e.location for e in self._external(onnx_path)] + \
            calib_for_worker + [Path(os.path.normpath(job_dir / p["path"])) for p in spec["plugins"] if p["sha256"]]
        return StagedJob(job.id, spec_path, key_parts, tuple(inputs))

    def _plugins(self, planned: PlannedJob, job_dir: Path) -> list[dict[str, Any]]:
        """The spec's plugin libraries: staged by content (inputs/plugins/<sha256>/<name>, so a host
        receives each once), paths relative to the job dir; host libraries as they are."""
        from fleetbuild.plan.layers import spec_entries

        def staged(library: Any) -> str:
            dest = self.out / "inputs" / "plugins" / self.hasher.sha256(library.path) / library.path.name
            self._copy_once(library.path, dest)
            return os.path.relpath(dest, job_dir)

        model = self.plan.config.models[planned.job.model]
        return spec_entries(self.plan.layers, model.layers, planned.target, self.hasher, staged)

    def _external(self, staged_onnx: Path) -> list:
        try:
            return list(self.inspector.inspect(staged_onnx).external_data)
        except Exception:
            return []

    def _calibration(self, facts: ModelFacts) -> list[Path]:
        staged = []
        for source in facts.calibration:
            digest = self.hasher.sha256(source)
            dest = self.out / "inputs" / "calibration" / f"{digest}{source.suffix}"
            self._copy_once(source, dest)
            staged.append(dest)
        return staged

    def _model(self, source: Path, precision: str, typed: bool, facts: ModelFacts,
               renamed: tuple = (), opset: int | None = None) -> tuple[Path, str, list[str]]:
        """(staged path, sha256, notes) of the model the worker builds: input dims renamed where the
        profile needs it, down-converted to `opset` when asked, converted to the precision for strongly
        typed builders."""
        convert = needs_conversion(precision, typed, facts.info is not None and facts.info.has_qdq)
        key = (str(source), precision if convert else None, renamed, opset)
        if key in self._models:
            return self._models[key]
        # the directory is named by the whole model's content (graph and external data), the key
        # part by the staged .onnx file's
        path, digest, notes = source, self.hasher.sha256(source), []
        directory = facts.content_digest or digest
        if convert or renamed or opset is not None:
            path, notes = self.converted.convert(source, directory, precision if convert else None, facts.calibration,
                                                 facts.calibration_digest, renamed, opset)
            digest = directory = self.hasher.sha256(path)
        dest = self.out / "inputs" / directory / (source.stem + ".onnx")
        self._copy_once(path, dest)
        if path == source:
            for ext in self.inspector.inspect(source).external_data:
                external = external_data_path(source, ext.location)
                if external is not None:
                    self._copy_once(external, dest.parent / ext.location)
        self._models[key] = (dest, digest, notes)
        return dest, digest, notes

    @staticmethod
    def _copy_once(source: Path, dest: Path) -> None:
        if dest.exists():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
