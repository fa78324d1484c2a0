"""`fleetbuild matrix accuracy`: how far a job's precision moves the model's outputs, measured.

For each job whose precision is made by converting the ONNX (fp16 with onnxconverter-common, int8
as Q/DQ with onnxruntime.quantization over the calibration data; the strongly typed builders:
TensorRT-RTX and TensorRT 11), the fp32 model and the converted one run in ONNX Runtime (CPU) on
the model's calibration batches (or one seeded random batch at the profile's opt shape). For
builder-flag precisions (TensorRT <= 10 fp16/int8) the same conversion gives the figure, labelled an
estimate: TensorRT picks its own per-layer precisions there. fp16 is measured on an fp32 model that
rounds every weight and every tensor through float16 (precision.fp16_emulation): ONNX Runtime's CPU
kernels would compute the converted model's fp16 ops in fp32 and hide the rounding and overflow. Per output:
- max_abs: the largest absolute difference;
- mean_rel: mean |a - b| / mean |a| (relative L1 error; stable when outputs cross zero);
- cosine: cosine similarity of the flattened outputs (1.0 is identical direction).
A model's `tolerance = { cosine = 0.999, max_abs = ..., mean_rel = ... }` (or [defaults]) turns a
miss into a failed job, in `matrix accuracy` and in `matrix build`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from fleetbuild.errors import FleetbuildError
from fleetbuild.models.precision import FP16_EMULATED, ConversionError, ConvertedModels
from fleetbuild.models.shapecheck import _random, input_shapes, shorten

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.config.fleet import Tolerance
    from fleetbuild.plan.planner import ModelFacts, Plan, PlannedJob

MEASURED = ("fp16", "int8")


@dataclass(frozen=True)
class OutputError:
    name: str
    max_abs: float
    mean_rel: float
    cosine: float


@dataclass
class Accuracy:
    job_id: str
    precision: str
    method: str                           # converted | estimate | skipped
    inputs: str = ""                      # calibration (N batches) | random (opt shape)
    outputs: list[OutputError] = field(default_factory=list)
    verdict: str = "ok"                   # ok | miss | no tolerance | error | skipped
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measurable(planned: "PlannedJob") -> bool:
    return planned.job.precision in MEASURED and planned.ok


def measure_jobs(plan: "Plan", jobs: Sequence["PlannedJob"], cache_dir: Path, facts: Mapping[str, "ModelFacts"],
                 progress: Callable[[str], None] = lambda job: None) -> list[Accuracy]:
    """Accuracy of each job (fp32 and tf32 jobs are 'skipped': nothing is converted)."""
    from fleetbuild.config.tensorrt_releases import strongly_typed

    converted = ConvertedModels(cache_dir)
    references: dict[str, tuple[list[dict], str, list]] = {}
    out = []
    for planned in jobs:
        job = planned.job
        progress(job.id)
        if not measurable(planned):
            out.append(Accuracy(job.id, job.precision, "skipped", verdict="skipped",
                                reason="invalid job" if not planned.ok else f"{job.precision} is not converted"))
            continue
        model = plan.config.models[job.model]
        mf = facts[job.model]
        method = "converted" if strongly_typed(job.options.backend, planned.target.tensorrt) else "estimate"
        result = Accuracy(job.id, job.precision, method)
        try:
            if job.model not in references:
                feeds, label = make_feeds(mf, model.inputs)
                references[job.model] = (feeds, label, run_model(model.onnx, feeds))
            feeds, label, expected = references[job.model]
            result.inputs = label
            measured_as = FP16_EMULATED if job.precision == "fp16" else job.precision
            candidate, _ = converted.convert(model.onnx, mf.content_digest, measured_as, mf.calibration,
                                             mf.calibration_digest)
            result.outputs = compare(expected, run_model(candidate, feeds), [o.name for o in mf.info.outputs])
            result.verdict, result.reason = judge(result.outputs, model.tolerance)
        except (ConversionError, AccuracyError) as err:
            result.verdict, result.reason = "error", str(err)
        out.append(result)
    return out


class AccuracyError(FleetbuildError):
    pass


def make_feeds(mf: "ModelFacts", profiles: Mapping[str, Any]) -> tuple[list[dict], str]:
    """The calibration batches (.npy for one input, .npz keyed by input), else one seeded random
    batch at the profile's opt shape."""
    import numpy as np

    info = mf.info
    names = [t.name for t in info.inputs]
    if mf.calibration:
        feeds = []
        for path in mf.calibration:
            if path.suffix == ".npz":
                with np.load(path) as data:
                    feeds.append({name: data[name] for name in names if name in data})
            elif len(names) == 1:
                feeds.append({names[0]: np.load(path)})
            else:
                raise AccuracyError(f"{path.name} is a .npy but the model has inputs {', '.join(names)}: use .npz")
        return feeds, f"calibration ({len(feeds)} batches)"
    shapes = input_shapes(info, profiles, "opt")
    if shapes is None:
        raise AccuracyError("an input has dynamic dims and no profile: nothing to run it with")
    rng = np.random.default_rng(0)
    types = {t.name: t.dtype for t in info.inputs}
    return [{name: _random(rng, types[name], shape) for name, shape in shapes.items()}], "random (opt shape)"


def run_model(path: Path, feeds: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return [session.run(None, dict(feed)) for feed in feeds]
    except Exception as err:
        raise AccuracyError(f"ONNX Runtime cannot run {path.name}: {shorten(err)}") from None


def compare(expected: list[list[Any]], actual: list[list[Any]], names: Sequence[str]) -> list[OutputError]:
    import numpy as np

    errors = []
    for index, name in enumerate(names):
        a = np.concatenate([np.asarray(batch[index], np.float64).ravel() for batch in expected])
        b = np.concatenate([np.asarray(batch[index], np.float64).ravel() for batch in actual])
        if a.shape != b.shape:
            raise AccuracyError(f"output {name} has {b.size} values, the fp32 model {a.size}")
        finite = np.isfinite(a) & np.isfinite(b)
        if not finite.all():
            raise AccuracyError(f"output {name}: {int((~finite).sum())} values are inf or NaN "
                                "in the converted model (overflow)")
        diff = np.abs(a - b)
        scale = float(np.abs(a).mean())
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = float(a @ b / norm) if norm > 0 else (1.0 if not diff.any() else 0.0)
        errors.append(OutputError(name, float(diff.max()) if diff.size else 0.0,
                                  float(diff.mean() / scale) if scale > 0 else float(diff.mean()),
                                  max(-1.0, min(1.0, cosine))))
    return errors


def judge(outputs: Sequence[OutputError], tolerance: "Tolerance | None") -> tuple[str, str]:
    if tolerance is None:
        return "no tolerance", ""
    for output in outputs:
        if tolerance.cosine is not None and output.cosine < tolerance.cosine:
            return "miss", f"output {output.name}: cosine {output.cosine:.6f} < {tolerance.cosine}"
        if tolerance.max_abs is not None and output.max_abs > tolerance.max_abs:
            return "miss", f"output {output.name}: max abs error {output.max_abs:.4g} > {tolerance.max_abs}"
        if tolerance.mean_rel is not None and output.mean_rel > tolerance.mean_rel:
            return "miss", f"output {output.name}: mean relative error {output.mean_rel:.4g} > {tolerance.mean_rel}"
    return "ok", ""


def worst(outputs: Sequence[OutputError]) -> OutputError | None:
    return min(outputs, key=lambda o: (o.cosine, -o.max_abs)) if outputs else None


def fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3g}"


def fmt_cosine(value: float) -> str:
    return f"{value:.6f}"
