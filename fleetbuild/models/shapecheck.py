"""`--check-shapes`: run each model in ONNX Runtime (CPU) at its profile's min, opt and max shapes.

A shape the model itself cannot run (a reshape that needs H = 48, a width that must be a multiple
of 32) fails in TensorRT too, later and less clearly. Inputs are seeded random data of the input's
type; results are cached by model sha256, profile and onnxruntime version under CACHE/shapes/.

Each run also records the shapes of the tensors whose rank TensorRT fixes at build (the input of a
Squeeze without axes, when ONNX cannot tell its dims statically): the rank rules read them.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fleetbuild.remote.buildkey import canonical_json
from fleetbuild.filehash import write_json_atomic
from fleetbuild.models.onnxinfo import OnnxInfo

POINTS = ("min", "opt", "max")
DTYPES = {"float": "float32", "float16": "float16", "double": "float64", "bfloat16": None, "int64": "int64",
          "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8", "uint16": "uint16",
          "uint32": "uint32", "uint64": "uint64", "bool": "bool"}
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_SOURCE_LOCATION = re.compile(r"^\S+\.(?:h|hpp|cc|cpp):\d+\s+")


@dataclass(frozen=True)
class ShapeRun:
    point: str                        # min | opt | max
    shapes: Mapping[str, list[int]]
    ok: bool
    message: str = ""
    watched: Mapping[str, list[int]] = field(default_factory=dict)   # node name -> its watched input's shape

    def shapes_text(self) -> str:
        return ", ".join(f"{name} {'x'.join(map(str, dims))}" for name, dims in self.shapes.items())


def input_shapes(info: OnnxInfo, profiles: Mapping[str, Any], point: str) -> dict[str, list[int]] | None:
    """The shape of every input at one profile point, or None when an input's shape is unknown."""
    shapes = {}
    for tensor in info.inputs:
        profile = profiles.get(tensor.name)
        if profile is not None:
            shapes[tensor.name] = list(getattr(profile, point))
        elif all(isinstance(d, int) and d > 0 for d in tensor.shape):
            shapes[tensor.name] = list(tensor.shape)
        else:
            return None
    return shapes


def check_model(path: Path, info: OnnxInfo, profiles: Mapping[str, Any], cache_dir: Path | None) -> list[ShapeRun]:
    """Runs at min, opt and max (fewer when points coincide); [] when some input has no shape."""
    import onnxruntime

    points = {}
    for point in POINTS:
        shapes = input_shapes(info, profiles, point)
        if shapes is None:
            return []
        if shapes not in points.values():
            points[point] = shapes
    watch = watched_inputs(info)
    key = hashlib.sha256(canonical_json({"model": info.sha256, "points": points, "watch": watch,
                                         "onnxruntime": onnxruntime.__version__})).hexdigest()
    cached = _cached(cache_dir, key)
    if cached is not None:
        return cached
    runs = _run(path, info, points, watch)
    if cache_dir is not None:
        try:
            write_json_atomic(cache_dir / "shapes" / f"{key}.json", [asdict(run) for run in runs])
        except OSError:
            pass
    return runs


def watched_inputs(info: OnnxInfo) -> dict[str, str]:
    """node name -> input tensor name, for each Squeeze without axes whose input ONNX cannot size."""
    watch = {}
    for fact in info.node_facts:
        if fact["op"] != "Squeeze" or "axes" in fact["attrs"] or len(fact["inputs"]) > 1 or fact.get("in"):
            continue
        data = fact["inputs"][0] if fact["inputs"] else {}
        dims = data.get("dims")
        if data.get("kind") == "computed" and data.get("name") and (dims is None or not all(
                isinstance(d, int) for d in dims)):
            watch[fact["name"]] = data["name"]
    return watch


def _session(path: Path, watch: Mapping[str, str], options: Any) -> Any:
    """An ONNX Runtime session whose outputs also give the watched tensors (when ONNX can type them)."""
    import onnxruntime

    if watch:
        try:
            import onnx

            model = onnx.load(str(path))
            typed = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
            outputs = {v.name for v in model.graph.output}
            for tensor in sorted(set(watch.values()) - outputs):
                if tensor in typed:
                    model.graph.output.append(typed[tensor])
            return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except Exception:                     # too big to serialize, untypeable: run without watching
            pass
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cached(cache_dir: Path | None, key: str) -> list[ShapeRun] | None:
    if cache_dir is None:
        return None
    try:
        return [ShapeRun(**item) for item in json.loads((cache_dir / "shapes" / f"{key}.json").read_text("utf-8"))]
    except (OSError, ValueError, TypeError):
        return None


def _run(path: Path, info: OnnxInfo, points: Mapping[str, Mapping[str, list[int]]],
         watch: Mapping[str, str]) -> list[ShapeRun]:
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4          # fatal only: a failing run is our finding, not a log line
    options.intra_op_num_threads = 2
    run_options = onnxruntime.RunOptions()
    run_options.log_severity_level = 4
    try:
        session = _session(path, watch, options)
    except Exception as err:
        message = f"ONNX Runtime cannot load the model: {shorten(err)}"
        return [ShapeRun(point, dict(shapes), False, message) for point, shapes in points.items()]
    rng = np.random.default_rng(0)
    types = {t.name: t.dtype for t in info.inputs}
    runs = []
    for point, shapes in points.items():
        try:
            feed = {name: _random(rng, types[name], shape) for name, shape in shapes.items()}
            names = [o.name for o in session.get_outputs()]
            values = dict(zip(names, session.run(None, feed, run_options)))
            seen = {node: list(values[tensor].shape) for node, tensor in watch.items() if tensor in values}
            runs.append(ShapeRun(point, dict(shapes), True, watched=seen))
        except Exception as err:
            runs.append(ShapeRun(point, dict(shapes), False, shorten(err)))
    return runs


def _random(rng: Any, dtype: str, shape: list[int]) -> Any:

    numpy_type = DTYPES.get(dtype)
    if numpy_type is None:
        raise ValueError(f"input type {dtype} cannot be fed from numpy")
    if numpy_type == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if numpy_type.startswith(("int", "uint")):
        return rng.integers(0, 8, size=shape).astype(numpy_type)
    return rng.standard_normal(size=shape).astype(numpy_type)


def shorten(err: BaseException, limit: int = 240) -> str:
    """ONNX Runtime's message on one line, without its error-code prefix, source location and the
    C++ condition that failed: "The input tensor cannot be reshaped to the requested shape. Input
    shape:{1,32}, requested shape:{1,8,8}"."""
    text = " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    text = _ORT_PREFIX.sub("", text)
    if "Status Message:" in text:
        text = text.rsplit("Status Message:", 1)[1].strip()
    if " was false. " in text:
        text = text.split(" was false. ", 1)[1].strip()
    text = _SOURCE_LOCATION.sub("", text) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"
