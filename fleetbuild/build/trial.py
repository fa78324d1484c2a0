"""`matrix plan --trial`: each TensorRT-RTX job built on the controller, CPU only, before anything
is dispatched: the plan's verdict held against the builder itself.

A job is staged exactly as for a real build (the converted model, renamed dims, the profile) and
built by the worker (`python -m fleetbuild.remote build`, the code the hosts run) in a scratch
directory. Verdicts are cached by the job's build-key parts (the converted model's hash included),
so a second plan of an unchanged matrix builds nothing. A job the rules passed and the trial could
not build becomes invalid (`trial-failed`, the builder's own words); a job the rules refused that the
trial builds keeps its refusal and says the two disagree (`trial-disagrees`): a rule that guards more
than the builder checks, or a wrong one.
Jobs for full TensorRT are not tried (TensorRT-RTX cannot stand in for another builder).
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fleetbuild.build.staging import Stager
from fleetbuild.config.tensorrt_releases import facts
from fleetbuild.filehash import write_json_atomic
from fleetbuild.models.onnxinfo import OnnxInspector
from fleetbuild.plan.planner import Plan, PlannedJob
from fleetbuild.plan.problems import Problem
from fleetbuild.remote.buildkey import build_key

TRIAL_VERSION = 1
TIMEOUT = 600


def rtx_version() -> str | None:
    try:
        import tensorrt_rtx
    except ImportError:
        return None
    return str(tensorrt_rtx.__version__)


def try_jobs(plan: Plan, cache_dir: Path, inspector: OnnxInspector) -> Plan:
    """The plan with each TensorRT-RTX job's trial verdict (and its consequence) added."""
    version = rtx_version()
    ccs = set(facts("tensorrt-rtx").compute_capabilities)
    jobs = []
    with tempfile.TemporaryDirectory(prefix="fleetbuild-trial-") as scratch:
        stager = Stager(plan, Path(scratch), cache_dir, inspector)
        for planned in plan.jobs:
            jobs.append(_try(planned, stager, cache_dir, version, ccs))
    return dataclasses.replace(plan, jobs=tuple(jobs))


def _try(planned: PlannedJob, stager: Stager, cache_dir: Path, version: str | None, ccs: set[str]) -> PlannedJob:
    target = planned.target
    if planned.job.options.backend != "tensorrt-rtx":
        return dataclasses.replace(planned, trial={"verdict": "not tried", "text": "not tried: TensorRT-RTX "
                                                   "cannot stand in for full TensorRT"})
    if planned.key_parts is None:
        return planned                               # no model to try: the plan already says why
    if version is None:
        return dataclasses.replace(planned, trial={"verdict": "not tried", "text": "not tried: TensorRT-RTX is "
                                                   "not installed on this controller (pip install 'fleetbuild[rtx]')"})
    if target.compute_capability not in ccs:
        return planned
    sm = "SM" + target.compute_capability.replace(".", "")
    try:
        parts = stager.key_parts(planned)
    except Exception as err:                         # the conversion itself failed: that is the verdict
        return _judged(planned, {"verdict": "failed", "text": f"conversion failed: {_line(err)}", "tool": version})
    key = build_key({"trial": TRIAL_VERSION, "rtx": version, "parts": parts})
    cached = cache_dir / "trial" / f"{key}.json"
    try:
        verdict = json.loads(cached.read_text("utf-8"))
    except (OSError, ValueError):
        verdict = _build(planned, stager, version, sm)
        try:
            write_json_atomic(cached, verdict)
        except OSError:
            pass
    return _judged(planned, verdict)


def _build(planned: PlannedJob, stager: Stager, version: str, sm: str) -> dict[str, Any]:
    staged = stager.stage_job(planned)
    out = staged.spec.parent / "trial-out"
    try:
        subprocess.run([sys.executable, "-m", "fleetbuild.remote", "build", "--spec", str(staged.spec), "--out",
                        str(out)], capture_output=True, timeout=TIMEOUT, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"verdict": "failed", "text": f"TensorRT-RTX {version} did not finish within {TIMEOUT} s", "tool": version}
    try:
        result = json.loads((out / "result.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {"verdict": "failed", "text": "the trial build reported nothing", "tool": version}
    if result.get("status") == "ok":
        return {"verdict": "built", "text": f"built with TensorRT-RTX {version} for {sm}", "tool": version}
    said = " / ".join(line.strip() for line in str(result.get("reason") or "failed").splitlines()[:2])
    return {"verdict": "failed", "text": f"TensorRT-RTX {version} for {sm}: {said[:400]}", "tool": version}


def _judged(planned: PlannedJob, verdict: dict[str, Any]) -> PlannedJob:
    problems = list(planned.problems)
    if verdict["verdict"] == "failed" and planned.ok:
        problems.append(Problem("trial-failed", f"the rules passed it, but the trial build failed: {verdict['text']}",
                                "a real build would fail the same way: fix the model, or report the rule "
                                "fleetbuild lacks"))
    elif verdict["verdict"] == "built" and not planned.ok:
        problems.append(Problem("trial-disagrees", f"the rules refused it, but the trial {verdict['text']}: the "
                                "rule guards more than this builder checks (a workspace no GPU has, a runtime shape) "
                                "or it is wrong (please report it)", "", "warning"))
    return dataclasses.replace(planned, problems=tuple(problems), trial=verdict)


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
