"""The built-in plan rules, one module per family; the plugin `builtin-compat` runs RULES through
the `fleetbuild_check_job` hook, like any third-party check. Rules import plan.problems, models and
config; they are pure (no I/O but what the model's inspection already read)."""
from __future__ import annotations

from typing import Iterable

from fleetbuild.plan.problems import JobContext, Problem, Rule
from fleetbuild.plan.rules.layers import check_layers
from fleetbuild.plan.rules.model import check_inputs, check_onnx, check_shape_runs, check_shared_dims
from fleetbuild.plan.rules.ops import check_opset, check_ops
from fleetbuild.plan.rules.options import check_dla, check_features, check_workspace
from fleetbuild.plan.rules.parser import check_parser_restrictions, check_squeeze_runs
from fleetbuild.plan.rules.target import (check_backend, check_calibration, check_precision, check_rtx_turing_gemm,
                                          check_typed_precision)

RULES: tuple[Rule, ...] = (check_onnx, check_precision, check_typed_precision, check_calibration, check_dla,
                           check_backend, check_rtx_turing_gemm, check_opset, check_ops, check_inputs, check_shared_dims,
                           check_shape_runs, check_layers, check_features, check_workspace,
                           check_parser_restrictions, check_squeeze_runs)

def run_rules(ctx: JobContext, rules: Iterable[Rule] = RULES) -> list[Problem]:
    return [problem for rule in rules for problem in rule(ctx)]
