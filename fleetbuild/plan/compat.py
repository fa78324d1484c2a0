"""Compatibility rules: (job, target, model facts) -> [Problem]. Pure functions, no I/O.

Plan-time rules need no GPU and no TensorRT: they use the target's data, the job's options and
the ONNX inspection. Each Problem says what is wrong and how to fix it; severity "error" makes the
job invalid, "warning" is shown but builds anyway. The built-in plugin runs RULES through the
`fleetbuild_check_job` hook, like any third-party check.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from fleetbuild.config.fleet import ModelSpec
from fleetbuild.config.matrix import Job
from fleetbuild.models.onnxinfo import OnnxError, OnnxInfo, external_data_path
from fleetbuild.config.targets import Target
from fleetbuild.config.tensorrt_releases import allowed_releases, best_opset, facts


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    hint: str = ""
    severity: str = "error"

    def text(self) -> str:
        return self.message + (f"; {self.hint}" if self.hint else "")


@dataclass(frozen=True)
class LayerProvider:
    """A custom layer provider: the ONNX ops it implements ('Op' or 'domain::Op') and its plugin
    libraries (fleetbuild.config.fleet.LayerLibrary: path on the controller, arch, TensorRT range,
    registration), or `library`, a path already installed on every build host."""

    name: str
    ops: tuple[str, ...]
    library: str | None = None
    source: str = ""
    libraries: tuple = ()

    def provides(self, custom_op: str) -> bool:
        op_type = custom_op.split("::", 1)[-1]
        return custom_op in self.ops or op_type in self.ops


@dataclass(frozen=True)
class JobContext:
    job: Job
    target: Target
    model: ModelSpec
    onnx: OnnxInfo | None
    onnx_error: OnnxError | None
    layers: Mapping[str, LayerProvider]
    calibration_files: tuple[Path, ...] = ()
    model_shown: str = ""                    # the ONNX path as the user wrote it
    extra: Mapping[str, object] = field(default_factory=dict)


Rule = Callable[[JobContext], Iterable[Problem]]


def check_onnx(ctx: JobContext) -> Iterator[Problem]:
    if ctx.onnx_error is not None:
        err = ctx.onnx_error
        written = ctx.model_shown or str(ctx.model.onnx)
        if err.code == "onnx-missing":
            yield Problem("onnx-missing", f"ONNX file not found: '{written}' (resolved to {ctx.model.onnx})",
                          f"fix models.{ctx.model.name}.onnx or create the file")
        else:
            yield Problem(err.code, err.message, err.hint)
        return
    for ext in ctx.onnx.external_data:
        path = external_data_path(ctx.model.onnx, ext.location)
        if path is None:
            yield Problem("external-data-unsafe",
                          f"external data location '{ext.location}' leaves the model's folder",
                          "re-save the model with onnx.save(..., save_as_external_data=True, location=NAME)")
        elif not path.exists():
            yield Problem("external-data-missing", f"external data file '{ext.location}' not found next to "
                          f"the model (looked for {path})", "copy it beside the .onnx file")
        elif ext.needed_bytes is not None and path.stat().st_size < ext.needed_bytes:
            yield Problem("external-data-truncated",
                          f"external data file '{ext.location}' has {path.stat().st_size} bytes, "
                          f"the model reads up to byte {ext.needed_bytes}", "copy the whole file again")


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


def check_dla(ctx: JobContext) -> Iterator[Problem]:
    options, target = ctx.job.options, ctx.target
    if options.dla_core is None:
        if options.gpu_fallback:
            yield Problem("gpu-fallback-without-dla", "gpu_fallback only matters with dla_core",
                          "set dla_core or drop gpu_fallback", "warning")
        return
    if target.dla_cores == 0:
        yield Problem("dla-unsupported", f"target {target.name} has no DLA cores",
                      "drop dla_core for this target (DLA exists on Xavier and AGX Orin / Orin NX)")
    elif options.dla_core >= target.dla_cores:
        yield Problem("dla-core-out-of-range",
                      f"dla_core {options.dla_core} does not exist on {target.name} "
                      f"(cores 0..{target.dla_cores - 1})", f"use dla_core = 0..{target.dla_cores - 1}")
    if ctx.job.precision not in ("fp16", "int8"):
        yield Problem("dla-precision", f"DLA runs fp16 or int8 layers, not {ctx.job.precision}",
                      "use precision fp16 or int8 for the DLA variant")
    if options.backend != "tensorrt":
        yield Problem("dla-backend", f"DLA needs the tensorrt backend, not {options.backend}",
                      "set backend = \"tensorrt\" for the DLA variant")


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


def check_ops(ctx: JobContext) -> Iterator[Problem]:
    """Ops the ONNX parser of no TensorRT release the target allows takes (subgraphs included)."""
    if ctx.onnx is None:
        return
    from fleetbuild.plan.onnx_ops import check_ops as verdicts

    backend, target = ctx.job.options.backend, ctx.target
    for verdict in verdicts(ctx.onnx.op_types, dict(ctx.onnx.op_since), backend, target.tensorrt):
        nodes = ctx.onnx.nodes_of(verdict.op)
        where = f"op {verdict.op} (node{'s' if len(nodes) > 1 else ''} {', '.join(nodes)})" if nodes else \
            f"op {verdict.op}"
        if verdict.reason == "not an ONNX operator":
            yield Problem("op-unknown", f"{where} is not an operator of the standard ONNX domain",
                          "fix the exporter, or give the op a custom domain and declare a [layers.*] provider")
        elif backend == "tensorrt-rtx":
            yield Problem("op-unsupported", f"{where} is not supported by TensorRT-RTX's ONNX parser",
                          f"use backend = \"tensorrt\" for {target.name}, or replace {verdict.op} in the model")
        elif verdict.first_release is not None:
            yield Problem("op-unsupported", f"{where} is not supported by the ONNX parser of TensorRT "
                          f"{target.tensorrt} ({target.name}); the first release with it is {verdict.first_release}",
                          f"exclude {target.name} for this model, or replace {verdict.op}")
        else:
            yield Problem("op-unsupported", f"{where} is not supported by the ONNX parser of any TensorRT "
                          f"release {target.name} allows ({target.tensorrt})",
                          f"exclude {target.name} for this model, or replace {verdict.op}")


def check_shared_dims(ctx: JobContext) -> Iterator[Problem]:
    """Input dims with one symbolic name but different profile extents (TensorRT ties them)."""
    if ctx.onnx is None:
        return
    from fleetbuild.models.dims import contradictions, renames

    found = contradictions(ctx.onnx, ctx.model.inputs)
    if not found:
        return
    mode = ctx.job.options.rename_dynamic_dims
    for name, uses in found.items():
        listed = ", ".join(use.text() for use in uses)
        if mode is False:
            yield Problem("shared-dim-name", f"input dims {listed} share the symbolic name '{name}' but the "
                          "profile gives them different extents: TensorRT takes dims with one name as one "
                          "dimension and refuses the profile",
                          "remove rename_dynamic_dims = false (the default renames them before parsing), "
                          "or give them one extent")
    if mode is not False:
        done = "; ".join(r.text() for r in renames(ctx.onnx, ctx.model.inputs, mode))
        yield Problem("dims-renamed", "input dims share a symbolic name with different profile extents "
                      f"(TensorRT would tie them); renamed before parsing: {done}", "", "warning")


def check_opset(ctx: JobContext) -> Iterator[Problem]:
    if ctx.onnx is None:
        return
    backend = ctx.job.options.backend
    found = best_opset(backend, ctx.target.tensorrt if backend == "tensorrt" else None)
    if found is None:
        return
    best_version, best = found
    if ctx.onnx.opset > best:
        where = (f"{ctx.target.name}'s TensorRT range {ctx.target.tensorrt}" if backend == "tensorrt"
                 else backend)
        yield Problem("opset-too-new",
                      f"model opset {ctx.onnx.opset} is above what {where} parses (max {best}, "
                      f"TensorRT {best_version})",
                      f"re-export at opset <= {best} (onnx.version_converter) or exclude this target")


def check_inputs(ctx: JobContext) -> Iterator[Problem]:
    if ctx.onnx is None:
        return
    names = [t.name for t in ctx.onnx.inputs]
    for name, profile in ctx.model.inputs.items():
        tensor = ctx.onnx.input(name)
        if tensor is None:
            import difflib

            close = difflib.get_close_matches(name, names, n=1)
            yield Problem("input-unknown", f"models.{ctx.model.name}.inputs names '{name}', "
                          "which is not an input of the model",
                          (f"did you mean '{close[0]}'? " if close else "") + "inputs: " + ", ".join(names))
            continue
        if len(profile.min) != len(tensor.shape):
            yield Problem("profile-rank", f"input '{name}' has rank {len(tensor.shape)} "
                          f"{_shape(tensor.shape)}, the profile gives rank {len(profile.min)}",
                          f"give {len(tensor.shape)} dimensions")
            continue
        for index, dim in enumerate(tensor.shape):
            if isinstance(dim, int) and dim > 0:
                values = {profile.min[index], profile.opt[index], profile.max[index]}
                if values != {dim}:
                    yield Problem("profile-static-mismatch",
                                  f"input '{name}' dimension {index} is fixed at {dim} in the model, "
                                  f"the profile gives {profile.min[index]}/{profile.opt[index]}/"
                                  f"{profile.max[index]}", f"use {dim} for min, opt and max of that dimension")
                    break
    for tensor in ctx.onnx.inputs:
        if tensor.dynamic_dims and tensor.name not in ctx.model.inputs:
            yield Problem("input-dynamic-no-profile",
                          f"input '{tensor.name}' {_shape(tensor.shape)} has dynamic dimensions and no profile",
                          f"add models.{ctx.model.name}.inputs.{tensor.name} = "
                          "{ min = [...], opt = [...], max = [...] }")


def _shape(shape: tuple) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_shape_runs(ctx: JobContext) -> Iterator[Problem]:
    """--check-shapes: the profile points ONNX Runtime could not run the model at."""
    for run in ctx.extra.get("shape_runs", ()):
        if not run.ok:
            yield Problem("shape-run-failed", f"ONNX Runtime cannot run the model at the profile's {run.point} "
                          f"({run.shapes_text()}): {run.message}",
                          f"give models.{ctx.model.name}.inputs shapes the model accepts")


def _with_nodes(ctx: JobContext, op: str) -> str:
    nodes = ctx.onnx.nodes_of(op) if ctx.onnx else ()
    return f"{op} (node{'s' if len(nodes) > 1 else ''} {', '.join(nodes)})" if nodes else op


def check_layers(ctx: JobContext) -> Iterator[Problem]:
    for name in ctx.model.layers:
        if name not in ctx.layers:
            from fleetbuild.config.schema import did_you_mean

            yield Problem("layer-unknown", f"models.{ctx.model.name}.layers names '{name}', "
                          "which no [layers.*] table or plugin provides",
                          did_you_mean(name, ctx.layers) or "declare [layers.%s] in fleet.toml" % name)
    if ctx.onnx is None:
        return
    chosen = [ctx.layers[n] for n in ctx.model.layers if n in ctx.layers]
    for op in ctx.onnx.custom_ops:
        if any(p.provides(op) for p in chosen):
            continue
        offering = [p.name for p in ctx.layers.values() if p.provides(op)]
        if offering:
            hint = f"add layers = [\"{offering[0]}\"] to models.{ctx.model.name}"
        else:
            hint = "declare its plugin library as [layers.NAME] with ops = [\"%s\"]" % op.split("::")[-1]
        yield Problem("custom-op-no-layer", f"custom op {_with_nodes(ctx, op)} has no plugin providing it", hint)
    if chosen and ctx.job.options.backend == "tensorrt-rtx":
        yield Problem("layers-unsupported-backend", "TensorRT-RTX loads no plugin libraries",
                      "build this model with backend = \"tensorrt\"")
        return
    from fleetbuild.plan.layers import LOAD_LIBRARY_FIRST, candidates, describe

    target = ctx.target
    for provider in chosen:
        if not provider.libraries or candidates(provider, target):
            continue
        ops = [op for op in (ctx.onnx.custom_ops if ctx.onnx else ()) if provider.provides(op)]
        where = f" (for {', '.join(_with_nodes(ctx, op) for op in ops)})" if ops else ""
        in_toml = not provider.source or provider.source.endswith(".toml")
        add = (f"add a [[layers.{provider.name}.libraries]] entry" if in_toml else
               f"add a library to the provider's package ({provider.source})")
        if not candidates(provider, target, tensorrt=False, registration=False):
            yield Problem("layer-no-library", f"layers.{provider.name}{where} has no library for {target.arch}, the "
                          f"CPU of {target.name} (it has {describe(provider.libraries)})",
                          f"{add} compiled for {target.arch}")
        elif not candidates(provider, target, registration=False):
            yield Problem("layer-no-library", f"layers.{provider.name}{where} has no {target.arch} library for "
                          f"TensorRT {target.tensorrt}, the range of {target.name} (it has "
                          f"{describe(provider.libraries)})",
                          f"{add} compiled for {target.arch} against TensorRT {target.tensorrt}")
        else:
            yield Problem("layer-no-library", f"layers.{provider.name}{where}: {target.name} allows TensorRT "
                          f"{target.tensorrt}, whose plugin registry has no load_library (it came in "
                          f"{LOAD_LIBRARY_FIRST})", "give the library registration = \"on-load\" (creators "
                          "registered when it loads)")


def check_features(ctx: JobContext) -> Iterator[Problem]:
    """Options that need a newer TensorRT than the target allows, or a newer GPU."""
    options, target = ctx.job.options, ctx.target
    rtx = options.backend == "tensorrt-rtx"
    trt = facts("tensorrt")
    allowed = allowed_releases("tensorrt", target.tensorrt)
    newest = allowed[-1] if allowed else None

    def needs(feature: str, label: str) -> Iterator[Problem]:
        if rtx:
            yield Problem("feature-unsupported", f"{label} is not available in TensorRT-RTX",
                          "drop it or use backend = \"tensorrt\"")
        elif newest is not None and not trt.has_feature(feature, newest):
            yield Problem("feature-unsupported", f"{label} needs TensorRT >= {trt.features[feature]}; "
                          f"{target.name} allows {target.tensorrt}", f"drop it for {target.name}")

    if options.version_compatible:
        yield from needs("version_compatible", "version_compatible")
    if options.exclude_lean_runtime and not options.version_compatible:
        yield Problem("lean-runtime-without-version-compatible",
                      "exclude_lean_runtime only applies to version-compatible engines",
                      "set version_compatible = true or drop exclude_lean_runtime")
    level = options.hardware_compatibility_level
    if level != "none":
        feature = "same_compute_capability" if level == "same_compute_capability" else \
            "hardware_compatibility_level"
        yield from needs(feature, f"hardware_compatibility_level = \"{level}\"")
        minimum = (8, 0) if level == "ampere_plus" else (7, 5)
        if target.cc < minimum:
            yield Problem("hardware-level-gpu", f"hardware_compatibility_level = \"{level}\" needs a build "
                          f"GPU of CC {minimum[0]}.{minimum[1]}+; {target.name} is {target.compute_capability}",
                          f"drop it for {target.name}")
        if target.platform == "jetson":
            yield Problem("hardware-level-jetson", "hardware compatibility is reported unsupported on "
                          "JetPack", "expect the build to fail on the Jetson host", "warning")
    if options.builder_optimization_level != 3 and not rtx and newest is not None and not trt.has_feature(
            "builder_optimization_level", newest):
        yield Problem("option-ignored", f"builder_optimization_level needs TensorRT >= 8.6; "
                      f"{target.name} allows {target.tensorrt}: it will be ignored", "", "warning")
    if ctx.job.precision in ("bf16", "fp8") and newest is not None and not rtx and not trt.has_feature(
            ctx.job.precision, newest):
        yield Problem("feature-unsupported", f"{ctx.job.precision} needs TensorRT >= "
                      f"{trt.features[ctx.job.precision]}; {target.name} allows {target.tensorrt}",
                      f"exclude {ctx.job.precision} for {target.name}")


RULES: tuple[Rule, ...] = (check_onnx, check_precision, check_typed_precision, check_calibration, check_dla,
                           check_backend, check_rtx_turing_gemm, check_opset, check_ops, check_inputs, check_shared_dims,
                           check_shape_runs, check_layers, check_features)


def run_rules(ctx: JobContext, rules: Iterable[Rule] = RULES) -> list[Problem]:
    return [problem for rule in rules for problem in rule(ctx)]
