"""What a plan rule says about a job (Problem) and what it is given (JobContext).

Plan-time rules need no GPU and no TensorRT: they read the target's data, the job's options and the
ONNX inspection. Each Problem says what is wrong and how to fix it; severity "error" makes the job
invalid, "warning" is shown but builds anyway.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from fleetbuild.config.fleet import ModelSpec
from fleetbuild.config.matrix import Job
from fleetbuild.config.targets import Target
from fleetbuild.models.onnxinfo import OnnxError, OnnxInfo
from fleetbuild.plan.layers import LayerProvider


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    hint: str = ""
    severity: str = "error"

    def text(self) -> str:
        return self.message + (f"; {self.hint}" if self.hint else "")


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
    built: OnnxInfo | None = None            # the converted graph the builder gets, when it is not the source

    @property
    def graph(self) -> OnnxInfo | None:
        """The graph as it will be built (converted for strongly typed fp16/int8), for node rules."""
        return self.built or self.onnx


Rule = Callable[[JobContext], Iterable[Problem]]


def with_nodes(ctx: JobContext, op: str) -> str:
    """`Op (nodes a, b)`: an op with the model's nodes of it, as messages name them."""
    nodes = ctx.onnx.nodes_of(op) if ctx.onnx else ()
    return f"{op} (node{'s' if len(nodes) > 1 else ''} {', '.join(nodes)})" if nodes else op
