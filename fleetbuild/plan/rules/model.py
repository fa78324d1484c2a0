"""Rules on the model itself: the ONNX file and its external data, the inputs against their
profiles, symbolic dims that share a name, and the --check-shapes runs."""
from __future__ import annotations

from typing import Iterator

from fleetbuild.models.onnxinfo import external_data_path
from fleetbuild.plan.problems import JobContext, Problem


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

def check_shape_runs(ctx: JobContext) -> Iterator[Problem]:
    """--check-shapes: the profile points ONNX Runtime could not run the model at."""
    for run in ctx.extra.get("shape_runs", ()):
        if not run.ok:
            yield Problem("shape-run-failed", f"ONNX Runtime cannot run the model at the profile's {run.point} "
                          f"({run.shapes_text()}): {run.message}",
                          f"give models.{ctx.model.name}.inputs shapes the model accepts")
