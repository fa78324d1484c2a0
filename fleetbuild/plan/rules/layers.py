"""Rules on custom layers: every custom op has a provider the model chose, and each provider has
a library the target's arch and TensorRT range can load."""
from __future__ import annotations

from typing import Iterator

from fleetbuild.plan.problems import JobContext, Problem, with_nodes


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
        yield Problem("custom-op-no-layer", f"custom op {with_nodes(ctx, op)} has no plugin providing it", hint)
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
        where = f" (for {', '.join(with_nodes(ctx, op) for op in ops)})" if ops else ""
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
