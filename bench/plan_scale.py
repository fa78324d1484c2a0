#!/usr/bin/env python3
"""Plan a 10,000-job matrix: 100 models x 20 targets x 5 precisions.

Prints the wall time of `make_plan` with a cold ONNX cache (every model hashed and inspected) and
with a warm one (the normal case: models unchanged since the last plan), and of the whole
`fleetbuild matrix plan --json` command with a warm cache. Goal: warm plan < 1 s.

    .venv/bin/python bench/plan_scale.py [--models 100] [--targets 20] [--repeat 5]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "quickstart"))

import onnx  # noqa: E402
from make_models import conv_bn_relu  # noqa: E402

from fleetbuild.cli import main  # noqa: E402
from fleetbuild.config.fleet import parse_config, read_fleet_toml  # noqa: E402
from fleetbuild.models.onnxinfo import OnnxInspector  # noqa: E402
from fleetbuild.plan.planner import make_plan  # noqa: E402
from fleetbuild.plugin.manager import Plugins  # noqa: E402
from fleetbuild.config.selectors import Selector  # noqa: E402

SHIPPED = ["t4", "a100", "l4", "h100", "orin", "xavier", "nano"]


def write_project(root: Path, models: int, targets: int) -> Path:
    (root / "models").mkdir()
    lines = ['[project]\nname = "scale"\n[defaults]\nprecisions = ["fp32", "tf32", "fp16", "bf16", "int8"]\n']
    for index in range(models):
        onnx.save(conv_bn_relu(channels=4 + index % 16), str(root / "models" / f"m{index}.onnx"))
        lines.append(f'[models.m{index}]\nonnx = "models/m{index}.onnx"\ncalibration = "calib/*.npy"\n')
    names = SHIPPED[:targets]
    for index in range(targets - len(names)):
        base = SHIPPED[index % len(SHIPPED)]
        lines.append(f'[targets.{base}-{index}]\nextends = "{base}"\n')
        names.append(f"{base}-{index}")
    lines.append("[matrix]\ntargets = [" + ", ".join(f'"{n}"' for n in names) + "]\n")
    (root / "calib").mkdir()
    (root / "calib" / "b0.npy").write_bytes(b"\x93NUMPY" + b"\0" * 128)
    path = root / "fleet.toml"
    path.write_text("".join(lines))
    return path


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(models: int, targets: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config_path = write_project(root, models, targets)
        plugins = Plugins(entry_points=False)
        config = parse_config(read_fleet_toml(config_path), plugins.targets())
        cache = root / "cache"
        jobs = []

        def plan_once(cache_dir):
            jobs[:] = make_plan(config, plugins, Selector(), OnnxInspector(cache_dir)).jobs

        cold = [timed(lambda: plan_once(root / f"cold{i}")) for i in range(repeat)]
        plan_once(cache)
        warm = [timed(lambda: plan_once(cache)) for _ in range(repeat)]
        env = {"FLEETBUILD_CACHE_DIR": str(cache), "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": "1"}
        cli = [timed(lambda: main(["-c", str(config_path), "matrix", "plan", "--json"], env=env,
                                  stdout=io.StringIO(), stderr=io.StringIO())) for _ in range(repeat)]
        table = [timed(lambda: main(["-c", str(config_path), "matrix", "plan"], env=env,
                                    stdout=io.StringIO(), stderr=io.StringIO())) for _ in range(repeat)]
        invalid = sum(not j.ok for j in jobs)
        print(f"jobs: {len(jobs)} ({models} models x {targets} targets x 5 precisions), {invalid} invalid")
        print(f"make_plan, cold ONNX cache:  median {statistics.median(cold):.3f} s  "
              f"({statistics.median(cold) / len(jobs) * 1e6:.1f} us/job)")
        print(f"make_plan, warm ONNX cache:  median {statistics.median(warm):.3f} s  "
              f"({statistics.median(warm) / len(jobs) * 1e6:.1f} us/job)  goal < 1 s: "
              f"{'met' if statistics.median(warm) < 1 else 'MISSED'}")
        print(f"`matrix plan --json`, warm:  median {statistics.median(cli):.3f} s (config parse, plan, JSON)")
        print(f"`matrix plan` (rich table), warm: median {statistics.median(table):.3f} s")
        print(f"warm / cold ratio: {statistics.median(warm) / statistics.median(cold):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    run(args.models, args.targets, args.repeat)
