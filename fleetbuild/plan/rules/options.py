"""Rules on build options: DLA, and the features (version compatibility, hardware compatibility,
optimization level, bf16/fp8) a target's TensorRT range or GPU must have."""
from __future__ import annotations

from typing import Iterator

from fleetbuild.config.tensorrt_releases import allowed_releases, facts
from fleetbuild.plan.problems import JobContext, Problem


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


WORKSPACE_LIMIT = 1 << 40       # 1 TiB: more than any GPU's memory (the largest have under 300 GB)


def check_workspace(ctx: JobContext) -> Iterator[Problem]:
    """A workspace no GPU has is a mistake in the unit (and past 2**64 bytes TensorRT cannot even take it)."""
    workspace = ctx.job.options.workspace
    if workspace is not None and workspace > WORKSPACE_LIMIT:
        yield Problem("workspace-too-large", f"workspace is {workspace:,} bytes, more memory than any GPU has "
                      f"({ctx.target.name} included)", "give it in MiB or GiB, e.g. workspace = \"1GiB\", or drop it "
                      "(TensorRT then uses what the GPU has)")
