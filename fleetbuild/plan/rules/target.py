"""Rules on what the target and its builder can do with the job's precision and backend:
precisions the GPU has, strongly typed builders, int8 calibration, TensorRT-RTX's targets and its
Turing GEMM gap."""
from __future__ import annotations

from typing import Iterator

from fleetbuild.config.tensorrt_releases import facts
from fleetbuild.plan.problems import JobContext, Problem


def check_precision(ctx: JobContext) -> Iterator[Problem]:
    if ctx.job.precision not in ctx.target.precisions:
        yield Problem("precision-unsupported",
                      f"target {ctx.target.name} (CC {ctx.target.compute_capability}) has no "
                      f"{ctx.job.precision}: it supports " + ", ".join(ctx.target.precisions),
                      f"exclude {{ model = \"{ctx.job.model}\", target = \"{ctx.target.name}\", "
                      f"precision = \"{ctx.job.precision}\" }}")

TYPED_PRECISION_TYPES = {"bf16": ("bfloat16",), "fp8": ("float8e4m3fn", "float8e5m2", "float8e4m3fnuz",
                                                          "float8e5m2fnuz")}

def check_typed_precision(ctx: JobContext) -> Iterator[Problem]:
    """Strongly typed builders take precision from the ONNX; fleetbuild converts to fp16 and int8,
    not to bf16 or fp8: such a job needs a model that already has those types."""
    from fleetbuild.config.tensorrt_releases import strongly_typed

    wanted = TYPED_PRECISION_TYPES.get(ctx.job.precision)
    if ctx.onnx is None or wanted is None or not strongly_typed(ctx.job.options.backend, ctx.target.tensorrt):
        return
    if not set(wanted) & set(ctx.onnx.dtypes):
        builder = "TensorRT-RTX" if ctx.job.options.backend == "tensorrt-rtx" else "TensorRT 11"
        yield Problem("precision-needs-model", f"{builder} takes precision from the model, which has no "
                      f"{ctx.job.precision} tensors, and fleetbuild converts only to fp16 and int8",
                      f"export a {ctx.job.precision} model, or build fp16 instead")

def check_calibration(ctx: JobContext) -> Iterator[Problem]:
    if ctx.job.precision != "int8" or ctx.onnx is None or ctx.onnx.has_qdq:
        return
    if ctx.model.calibration is None:
        yield Problem("calibration-missing",
                      "int8 needs calibration data, and the model has no Q/DQ nodes",
                      f"set models.{ctx.model.name}.calibration = \"calib/*.npy\" or export a Q/DQ model")
    elif not ctx.calibration_files:
        yield Problem("calibration-empty", f"calibration glob '{ctx.model.calibration}' matches no file",
                      "check the pattern (relative to fleet.toml)")

def check_backend(ctx: JobContext) -> Iterator[Problem]:
    backend, target = ctx.job.options.backend, ctx.target
    if backend not in target.backends:
        extra = ""
        if backend == "tensorrt-rtx":
            extra = " (TensorRT-RTX targets compute capability " + ", ".join(
                facts("tensorrt-rtx").compute_capabilities) + f"; {target.name} is {target.compute_capability})"
        yield Problem("backend-unsupported", f"backend {backend} cannot build for {target.name}{extra}",
                      "use one of: " + ", ".join(target.backends))

# Ops TensorRT-RTX lowers to matrix multiplies: recurrent layers (inside Loops), Einsum, attention.
GEMM_OPS = ("MatMul", "Gemm", "LSTM", "GRU", "RNN", "Einsum", "Attention")

def check_rtx_turing_gemm(ctx: JobContext) -> Iterator[Problem]:
    """Measured on TensorRT-RTX 1.7.1: 'Cannot compile operation ... for Turing (SM75): FP32 GEMM is
    not supported' (also for an LSTM, inside its Loop). FP16 builds of the same models work."""
    if (ctx.onnx is None or ctx.job.options.backend != "tensorrt-rtx" or ctx.target.cc != (7, 5)
            or ctx.job.precision not in ("fp32", "tf32")):
        return
    found = [op for op in GEMM_OPS if op in ctx.onnx.op_types]
    if found:
        lowered = [op for op in found if op not in ("MatMul", "Gemm")]
        yield Problem("rtx-turing-fp32-gemm", f"TensorRT-RTX has no FP32 GEMM for Turing (CC 7.5); the model "
                      f"has {' and '.join(found)}" + (f" ({', '.join(lowered)} lowered to GEMM)" if lowered else ""),
                      f"build fp16 for {ctx.target.name}, or use backend = \"tensorrt\"")
