#!/usr/bin/env python3
"""Worker overhead: `fleetbuild-remote.pyz build` vs a bare TensorRT-RTX script with the same options.

All run as fresh processes of the same interpreter, alternating, on a generated conv stack. The
worker runs twice per round: as the zipapp file (zipimport compiles every module on every run) and
unpacked into a directory (bytecode cached after the first run). Prints medians, the fixed overhead
in milliseconds and the ratios worker / bare (goal <= 1.05).

    .venv/bin/python bench/worker_overhead.py [--runs 7] [--layers 160] [--cc 8.0]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleetbuild.build.bundle import build_zipapp  # noqa: E402

BARE = r'''
import sys, tensorrt_rtx as trt
onnx_path, cc, out, workspace = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
class Logger(trt.ILogger):
    def __init__(self):
        trt.ILogger.__init__(self)
    def log(self, severity, message):
        pass
logger = Logger()
builder = trt.Builder(logger)
network = builder.create_network(0)
parser = trt.OnnxParser(network, logger)
assert parser.parse_from_file(onnx_path)
config = builder.create_builder_config()
config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
config.num_compute_capabilities = 1
config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), 0)
config.builder_optimization_level = 3
plan = builder.build_serialized_network(network, config)
open(out, "wb").write(bytes(plan))
'''


def conv_stack(layers: int, channels: int = 64, size: int = 56) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "input"
    for index in range(layers):
        w = numpy_helper.from_array(rng.standard_normal((channels, channels if index else 3, 3, 3)).astype(np.float32)
                                    * 0.05, f"w{index}")
        b = numpy_helper.from_array(np.zeros(channels, np.float32), f"b{index}")
        weights += [w, b]
        nodes.append(helper.make_node("Conv", [current, f"w{index}", f"b{index}"], [f"c{index}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{index}"], [f"r{index}"]))
        current = f"r{index}"
    graph = helper.make_graph(nodes, "conv_stack",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, channels, size, size])],
                              initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def timed(argv: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[1]} failed: {proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--layers", type=int, default=160)
    parser.add_argument("--cc", default="8.0")
    args = parser.parse_args()
    import _needs

    _needs.module("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    workspace = 256 << 20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = root / "conv_stack.onnx"
        onnx.save(conv_stack(args.layers), str(model))
        zipapp, _ = build_zipapp(root)
        unpacked = root / "unpacked"
        import zipfile
        zipfile.ZipFile(zipapp).extractall(unpacked)
        (root / "bare.py").write_text(BARE)
        spec = {"schema": 1, "job_id": "bench/conv_stack", "backend": "tensorrt-rtx", "precision": "fp32",
                "onnx": str(model), "compute_capability": args.cc,
                "options": {"workspace": workspace, "builder_optimization_level": 3, "timing_cache": True},
                "key_parts": {"bench": True},
                "host": {"host": "bench", "arch": "x86_64", "gpus": []}}   # dispatch passes probed facts
        (root / "spec.json").write_text(json.dumps(spec))
        worker, unzipped, bare = [], [], []
        for run in range(args.runs + 1):                 # run 0 warms caches and is dropped
            w = timed([sys.executable, str(zipapp), "build", "--spec", str(root / "spec.json"),
                       "--out", str(root / f"out{run}")])
            u = timed([sys.executable, str(unpacked), "build", "--spec", str(root / "spec.json"),
                       "--out", str(root / f"unpacked{run}")])
            b = timed([sys.executable, str(root / "bare.py"), str(model), args.cc, str(root / f"bare{run}.plan"),
                       str(workspace)])
            if run:
                worker.append(w)
                unzipped.append(u)
                bare.append(b)
        build_seconds = json.loads((root / f"out{args.runs}" / "manifest.json").read_text())["build_seconds"]
        med = statistics.median
        print(f"model: {args.layers} conv+relu layers, 64ch 56x56, TensorRT-RTX, CC {args.cc}, fp32; {args.runs} runs each")
        print(f"bare script:        median {med(bare):.3f} s (min {min(bare):.3f}); builder itself {build_seconds:.3f} s")
        for label, times in (("worker (zipapp)", worker), ("worker (unpacked)", unzipped)):
            ratio = med(times) / med(bare)
            print(f"{label + ':':19} median {med(times):.3f} s (min {min(times):.3f}); overhead "
                  f"{(med(times) - med(bare)) * 1000:+.0f} ms; ratio {ratio:.3f} "
                  f"(goal <= 1.05: {'met' if ratio <= 1.05 else 'MISSED'})")


if __name__ == "__main__":
    main()
