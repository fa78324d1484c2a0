"""Rules on single nodes, from the restrictions TensorRT's ONNX parser documents per op
(onnx/onnx-tensorrt docs/operators.md, 8.2-GA to 10.1-GA) and what TensorRT-RTX 1.7.1 was measured
to do with small models written for each (tests/integration/test_parser_rules.py builds them):

| restriction | docs | TensorRT-RTX 1.7.1 | rule |
|---|---|---|---|
| DequantizeLinear input INT8/FP8/INT4 | yes | refuses INT32 at parse | error |
| zero points must be zero (Q and DQ) | yes | refuses int8 and uint8 non-zero | error |
| Squeeze without axes, a dynamic dim that is 1 at opt | (rank fixed at build) | fails at build | error |
| the same, 1 at min or max only | | builds (the engine refuses that shape) | warning |
| pooling dilations all ones | yes | refuses at parse | error |
| MaxPool's Indices output | unsupported | not measured | error |
| Resize coordinate transformation modes | listed | refuses tf_crop_and_resize | error |
| Resize antialias, keep_aspect_ratio_policy | stretch only, no antialias | not measured | error |
| LSTM input_forget 0 | yes | refuses 1 | error |
| bidirectional LSTM/GRU/RNN: same activations both ways | yes | not measured | error |
| ScatterND reduction | unsupported | refuses "add" | error |
| TopK K < 3840 | yes | not measured | error |
| Resize cubic, TopK sorted=0, LSTM layout=1, computed Unsqueeze axes | "unsupported" | builds | no rule: the docs are behind |

Restrictions the graph cannot decide (a Loop's scan output length, an If's branch ranks, ...) are
warnings that quote them (targets/onnx_trt_restrictions.tsv, regenerated from onnx-tensorrt's docs by
tools/onnx_trt_ops.py), as are inputs the docs want constant that the model computes (TensorRT-RTX
builds a computed Unsqueeze axes: `matrix plan --trial` settles it per model). Node facts come from
fleetbuild.models.nodefacts (every graph: If branches and Loop bodies too).
"""
from __future__ import annotations

import functools
import importlib.resources
from typing import Any, Iterator

from fleetbuild.config.tensorrt_releases import allowed_releases
from fleetbuild.plan.problems import JobContext, Problem

ZERO_POINT_INPUT = 2
DOC_TYPES = {"INT8": "int8", "UINT8": "uint8", "FP8": "float8e4m3fn", "INT4": "int4", "FP4": "float4e2m1",
             "INT32": "int32", "INT64": "int64", "FP32": "float", "FP16": "float16", "BF16": "bfloat16", "BOOL": "bool"}
RTX_DQ_TYPES = ("int8", "uint8", "float8e4m3fn", "int4", "float4e2m1")    # its parser's own message, 1.7.1
RTX_TABLE = "10.1"                      # the docs' release TensorRT-RTX's parser is compared with
CONSTANT_INPUTS = {"Squeeze": (1, "axes"), "Unsqueeze": (1, "axes"), "Slice": (3, "axes"), "Pad": (3, "axes"),
                   "CumSum": (1, "axis"), "OneHot": (1, "depth"), **{op: (1, "axes") for op in (
                       "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                       "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")}}
RESIZE_COORDINATES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
TOPK_LIMIT = 3840
DECIDED = {"Conv", "ConvTranspose", "DequantizeLinear", "QuantizeLinear", "Squeeze", "MaxPool", "AveragePool", "LpPool", "Resize", "LSTM",
           "GRU", "RNN", "ScatterND", "TopK", "Dropout", "LayerNormalization", "Constant", "RandomNormal",
           "RandomNormalLike", "RandomUniform", "RandomUniformLike", *CONSTANT_INPUTS}


@functools.lru_cache(maxsize=None)
def restrictions() -> dict[tuple[str, str], tuple[str, str]]:
    """(op, release) -> (supported types, restrictions) from targets/onnx_trt_restrictions.tsv."""
    text = importlib.resources.files("fleetbuild_targets").joinpath("onnx_trt_restrictions.tsv").read_text("utf-8")
    found = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "op\t")):
            op, release, types, said = (line.split("\t") + ["", "", "", ""])[:4]
            found[(op, release)] = (types, said)
    return found


@functools.lru_cache(maxsize=4096)
def _tables(flavor: str, tensorrt_range: str | None) -> tuple[str, ...]:
    """The doc releases that speak for a target: the ones its range allows (TensorRT-RTX: RTX_TABLE)."""
    if flavor == "tensorrt-rtx":
        return (RTX_TABLE,)
    columns = sorted({release for _, release in restrictions()}, key=lambda r: tuple(int(p) for p in r.split(".")))
    allowed = allowed_releases("tensorrt", tensorrt_range)
    picked = [c for c in columns if any(f"{v.major}.{v.minor}" == c for v in allowed)]
    newer = [c for c in columns if allowed and tuple(int(p) for p in c.split(".")) <= (allowed[-1].major,
                                                                                          allowed[-1].minor)]
    return tuple(picked or newer[-1:] or columns[-1:])


def _dq_types(flavor: str, tensorrt_range: str | None) -> tuple[str, ...]:
    if flavor == "tensorrt-rtx":
        return RTX_DQ_TYPES
    found: list[str] = []
    for release in _tables(flavor, tensorrt_range):
        types, _ = restrictions().get(("DequantizeLinear", release), ("", ""))
        found += [DOC_TYPES.get(t.strip(), t.strip().lower()) for t in types.split(",") if t.strip()]
    return tuple(dict.fromkeys(found)) or ("int8",)


def _where(fact: dict) -> str:
    return f"{fact['op']} node {fact['name']}" + (f" (in {fact['in']})" if fact.get("in") else "")


def check_parser_restrictions(ctx: JobContext) -> Iterator[Problem]:
    graph = ctx.graph                    # converted for strongly typed fp16/int8: what the parser will read
    if graph is None:
        return
    flavor = "tensorrt-rtx" if ctx.job.options.backend == "tensorrt-rtx" else "tensorrt"
    for fact in graph.node_facts:
        yield from CHECKS.get(fact["op"], _none)(ctx, fact, flavor)
        if fact["op"] in CONSTANT_INPUTS:
            yield from _constant_input(fact)
    release = _tables(flavor, ctx.target.tensorrt)[-1]
    for op in sorted(set(graph.op_types) - DECIDED):
        said = restrictions().get((op, release), ("", ""))[1]
        if said:
            yield Problem("parser-restriction", f"TensorRT's ONNX parser ({release} docs) restricts {op}: {said} "
                          f"(fleetbuild cannot tell from the graph; `matrix plan --trial` can)", "", "warning")


def _none(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    return iter(())


def _input(fact: dict, index: int) -> dict:
    inputs = fact["inputs"]
    return inputs[index] if index < len(inputs) else {"kind": "absent"}


def _quantize(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    fix = ("re-quantize with symmetric int8 (onnxruntime.quantization: QuantType.QInt8 with "
           "extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True}) and keep biases in float")
    if fact["op"] == "DequantizeLinear":
        dtype = _input(fact, 0).get("dtype")
        allowed = _dq_types(flavor, ctx.target.tensorrt)
        if dtype and dtype not in allowed:
            yield Problem("dq-input-type", f"{_where(fact)} dequantizes {dtype}; TensorRT's parser takes "
                          f"{', '.join(allowed)} ({'TensorRT-RTX' if flavor == 'tensorrt-rtx' else 'TensorRT'})",
                          fix if dtype == "int32" else "quantize to int8 (or fp8) instead")
    zero = _input(fact, ZERO_POINT_INPUT)
    label = "x_zero_point" if fact["op"] == "DequantizeLinear" else "y_zero_point"
    if zero["kind"] in ("initializer", "constant") and zero.get("zero") is False:
        yield Problem("qdq-zero-point", f"{_where(fact)} has a non-zero {label}: TensorRT takes symmetric "
                      "quantization only (zero points of 0)", fix)
    elif zero["kind"] == "computed":
        yield Problem("qdq-zero-point", f"{_where(fact)} computes its {label} at run time: TensorRT needs it to "
                      "be a constant 0", fix)


def _squeeze(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    if "axes" in fact["attrs"] or _input(fact, 1)["kind"] != "absent":
        return
    dims = _input(fact, 0).get("dims")
    named = _dim_profiles(ctx)
    if dims is None:
        return
    for position, dim in enumerate(dims):
        if isinstance(dim, str) and dim in named:
            low, opt, high, where = named[dim]
            if low <= 1 <= high and low != high:
                yield squeeze_verdict(fact, f"a dimension that follows {where}", opt == 1,
                                      f"{where}: {low}/{opt}/{high}", f"give {where} a minimum of 2")
        elif dim is None or isinstance(dim, str):
            if any(fact["name"] in run.watched for run in ctx.extra.get("shape_runs", ()) if run.ok):
                return                           # ONNX Runtime saw its shapes: check_squeeze_runs decides
            yield Problem("squeeze-dynamic-rank", f"{_where(fact)} squeezes without axes a dimension fleetbuild "
                          "cannot follow to the profile: if it can be 1 at run time, TensorRT refuses it",
                          "export the Squeeze with axes", "warning")
            return


def check_squeeze_runs(ctx: JobContext) -> Iterator[Problem]:
    """--check-shapes: a Squeeze without axes whose input ONNX cannot size statically, seen by ONNX
    Runtime at the profile's points with a dimension that is 1 at one point and not at another: the
    dimension is dynamic and can be 1 (see squeeze_verdict)."""
    from fleetbuild.models.shapecheck import input_shapes

    runs = [run for run in ctx.extra.get("shape_runs", ()) if run.ok and run.watched]
    if not runs or ctx.onnx is None:
        return
    opt_run = next((run.point for run in runs if run.shapes == input_shapes(ctx.onnx, ctx.model.inputs, "opt")), None)
    for fact in ctx.onnx.node_facts:
        seen = {run.point: run.watched[fact["name"]] for run in runs if fact["name"] in run.watched}
        if fact["op"] != "Squeeze" or len({len(shape) for shape in seen.values()}) != 1:
            continue
        at = ", ".join(f"{point} {'x'.join(map(str, shape))}" for point, shape in seen.items())
        for position in range(len(next(iter(seen.values())))):
            values = {point: shape[position] for point, shape in seen.items()}
            if 1 in values.values() and len(set(values.values())) > 1:
                yield squeeze_verdict(fact, f"its input's dimension {position}", values.get(opt_run) == 1,
                                      f"{at}, as ONNX Runtime ran it",
                                      "give the inputs a profile where that dimension is never 1 (a minimum "
                                      "batch of 2, for a batch dimension)")
                break


def squeeze_verdict(fact: dict, what: str, at_opt: bool, seen: str, fix: str) -> Problem:
    """TensorRT fixes a Squeeze's output rank at build, so a squeezed dimension that can be 1 must never
    be 1. Measured on TensorRT-RTX 1.7.1: the build checks the profile's opt only ("kOPT values for
    profile 0 violate shape constraints: ISqueezeLayer without an axes input requires dimension 0 to not
    be 1"); a 1 at min or max builds, and the engine then refuses that shape at run time."""
    if at_opt:
        return Problem("squeeze-dynamic-rank", f"{_where(fact)} squeezes without axes {what}, which is 1 at the "
                       f"profile's opt and not everywhere ({seen}): TensorRT fixes the output rank at build and "
                       "refuses it", f"export the Squeeze with axes, or {fix}")
    return Problem("squeeze-dynamic-rank", f"{_where(fact)} squeezes without axes {what}, which the profile lets "
                   f"be 1 ({seen}): TensorRT builds it, and the engine refuses every input where it is 1",
                   f"export the Squeeze with axes, or {fix}", "warning")


def _dim_profiles(ctx: JobContext) -> dict[str, tuple[int, int, int, str]]:
    """symbolic dim name -> (min, opt, max, 'input[i]') from the profiles of the inputs that use it."""
    found = {}
    for tensor in ctx.graph.inputs:
        profile = ctx.model.inputs.get(tensor.name)
        if profile is None:
            continue
        for index, dim in enumerate(tensor.shape):
            if isinstance(dim, str) and index < len(profile.min):
                found.setdefault(dim, (profile.min[index], profile.opt[index], profile.max[index],
                                       f"{tensor.name}[{index}]"))
    return found


def _pool(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    dilations = fact["attrs"].get("dilations") or []
    if any(d != 1 for d in dilations):
        yield Problem("pool-dilations", f"{_where(fact)} has dilations {dilations}: TensorRT pools with dilations "
                      "of 1 only", "remove the dilations (e.g. dilate the input with a strided Conv instead)")
    if fact["op"] == "MaxPool" and len(fact["outputs_used"]) > 1 and fact["outputs_used"][1]:
        yield Problem("maxpool-indices", f"{_where(fact)} uses its Indices output, which TensorRT does not produce",
                      "export without return_indices, or compute the indices another way")


def _resize(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    attrs = fact["attrs"]
    mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode not in RESIZE_COORDINATES:
        yield Problem("resize-mode", f"{_where(fact)} uses coordinate_transformation_mode {mode!r}; TensorRT takes "
                      + ", ".join(RESIZE_COORDINATES), "export with one of those (half_pixel is ONNX's default)")
    if attrs.get("antialias", 0):
        yield Problem("resize-mode", f"{_where(fact)} antialiases, which TensorRT does not", "export with antialias=0")
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        yield Problem("resize-mode", f"{_where(fact)} has keep_aspect_ratio_policy {policy!r}; TensorRT takes "
                      "'stretch' only", "give explicit sizes or scales instead")


def _recurrent(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    attrs = fact["attrs"]
    if fact["op"] == "LSTM" and attrs.get("input_forget", 0):
        yield Problem("rnn-attribute", f"{_where(fact)} couples input and forget gates (input_forget=1), which "
                      "TensorRT's LSTM does not", "export with input_forget=0")
    activations = attrs.get("activations") or []
    if attrs.get("direction") == "bidirectional" and activations and len(activations) % 2 == 0:
        half = len(activations) // 2
        if [a.lower() for a in activations[:half]] != [a.lower() for a in activations[half:]]:
            yield Problem("rnn-attribute", f"{_where(fact)} is bidirectional with different activations each way "
                          f"({activations}); TensorRT needs the same both ways", "export with one set of activations")


def _scatter(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    reduction = fact["attrs"].get("reduction", "none")
    if reduction not in ("none", ""):
        yield Problem("scatter-reduction", f"{_where(fact)} reduces with {reduction!r}; TensorRT's ScatterND "
                      "takes no reduction", "export without reduction (or scatter into zeros and add)")


def _topk(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    k = _input(fact, 1)
    values = k.get("values") or ([fact["attrs"]["k"]] if "k" in fact["attrs"] else [])
    if values and max(values) >= TOPK_LIMIT:
        yield Problem("topk-k", f"{_where(fact)} takes the top {max(values)}; TensorRT's TopK takes K < {TOPK_LIMIT}",
                      f"take fewer than {TOPK_LIMIT}, or sort another way")


def _constant_input(fact: dict) -> Iterator[Problem]:
    index, label = CONSTANT_INPUTS[fact["op"]]
    if _input(fact, index)["kind"] == "computed":
        yield Problem("parser-restriction", f"{_where(fact)} computes its `{label}`, which TensorRT's docs want "
                      "constant (TensorRT-RTX 1.7.1 builds a computed Unsqueeze axes; `matrix plan --trial` tells "
                      "for this model)", "", "warning")


def _dropout(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    training = _input(fact, 2)
    if training["kind"] == "computed":
        yield Problem("dropout-training", f"{_where(fact)} computes training_mode: TensorRT needs a constant False",
                      "export the model in eval mode")
    elif training["kind"] in ("initializer", "constant") and training.get("zero") is False:
        yield Problem("dropout-training", f"{_where(fact)} is in training mode: TensorRT runs inference only",
                      "export the model in eval mode (model.eval())")


def _layer_norm(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    if any(fact["outputs_used"][1:]):
        yield Problem("layernorm-outputs", f"{_where(fact)} uses Mean or InvStdDev, and TensorRT's "
                      "LayerNormalization gives only Y", "export without the extra outputs")


def _random(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    if "seed" in fact["attrs"]:
        yield Problem("parser-restriction", f"{_where(fact)} sets a seed, which TensorRT ignores: its random "
                      "numbers will differ from ONNX Runtime's", "", "warning")


def _conv(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    """Older docs: 2D or 3D convolutions only, weights an initializer. TensorRT takes 1D convolutions
    and quantized (computed) weights in practice, so only a 4D-or-more kernel is worth a word."""
    kernel = fact["attrs"].get("kernel_shape") or []
    if len(kernel) > 3:
        yield Problem("parser-restriction", f"{_where(fact)} convolves over {len(kernel)} dimensions: TensorRT "
                      "convolves over 2 or 3 (1 through a reshape)", "", "warning")


def _constant(ctx: JobContext, fact: dict, flavor: str) -> Iterator[Problem]:
    yield Problem("constant-type", f"{_where(fact)} holds a sparse or string constant, which TensorRT does not take",
                  "export dense numeric constants")


CHECKS: dict[str, Any] = {"DequantizeLinear": _quantize, "QuantizeLinear": _quantize, "Squeeze": _squeeze,
                          "MaxPool": _pool, "AveragePool": _pool, "LpPool": _pool, "Resize": _resize,
                          "LSTM": _recurrent, "GRU": _recurrent, "RNN": _recurrent, "ScatterND": _scatter,
                          "TopK": _topk, "Conv": _conv, "ConvTranspose": _conv, "Dropout": _dropout, "LayerNormalization": _layer_norm, "Constant": _constant,
                          **{op: _random for op in ("RandomNormal", "RandomNormalLike", "RandomUniform",
                                                    "RandomUniformLike")}}
