"""Rules on what TensorRT's ONNX parser takes: the opset and each operator, per release the
target allows."""
from __future__ import annotations

from typing import Iterator

from fleetbuild.config.tensorrt_releases import best_opset
from fleetbuild.plan.problems import JobContext, Problem


def check_opset(ctx: JobContext) -> Iterator[Problem]:
    """The model's opset (after `downgrade_opset`'s conversion, when it ran) against the parser's."""
    if ctx.onnx is None or (ctx.job.options.downgrade_opset and ctx.built is None):
        return                  # not needed, or it failed and the job's conversion-failed says why
    backend = ctx.job.options.backend
    found = best_opset(backend, ctx.target.tensorrt if backend == "tensorrt" else None)
    if found is None:
        return
    best_version, best = found
    if ctx.graph.opset > best:
        where = (f"{ctx.target.name}'s TensorRT range {ctx.target.tensorrt}" if backend == "tensorrt"
                 else backend)
        yield Problem("opset-too-new",
                      f"model opset {ctx.graph.opset} is above what {where} parses (max {best}, "
                      f"TensorRT {best_version})",
                      f"set downgrade_opset = true (fleetbuild converts it with onnx.version_converter and checks "
                      f"the result), re-export at opset <= {best}, or exclude this target")

def check_ops(ctx: JobContext) -> Iterator[Problem]:
    """Ops the ONNX parser of no TensorRT release the target allows takes (subgraphs included)."""
    graph = ctx.graph
    if graph is None:
        return
    from fleetbuild.plan.onnx_ops import check_ops as verdicts

    backend, target = ctx.job.options.backend, ctx.target
    for verdict in verdicts(graph.op_types, dict(graph.op_since), backend, target.tensorrt):
        nodes = graph.nodes_of(verdict.op)
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
