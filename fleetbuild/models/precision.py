"""Precision conversion for strongly typed builders (TensorRT 11, TensorRT-RTX).

They take precision from the ONNX itself, so the controller converts before staging: FP16 with
onnxconverter-common (graph inputs/outputs stay float32), INT8 as explicit Q/DQ with onnxruntime's
static quantization over the calibration batches (symmetric, as TensorRT requires; biases left in
float, since TensorRT-RTX refuses int32-quantized biases). Converted models are cached by a key of
source hash, precision, calibration digest and converter versions; the converted model's hash is
what enters the build key. This is the only module importing the conversion libraries.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from fleetbuild.remote.buildkey import canonical_json
from fleetbuild.errors import FleetbuildError
from fleetbuild.filehash import write_json_atomic
from fleetbuild.models.onnxinfo import all_nodes

CONVERTED = ("fp16", "int8")
FP16_EMULATED = "fp16-emulated"   # an fp32 model that rounds like the fp16 one: for measuring accuracy
CONVERSION_VERSION = 5       # bump when what fleetbuild does around the converters changes (5: mixed types kept fp32)


class ConversionError(FleetbuildError):
    """The model could not be converted; the job fails with this reason."""


def needs_conversion(precision: str, strongly_typed: bool, has_qdq: bool = False) -> bool:
    """Whether fleetbuild converts the model for this job: fp16 and int8 for strongly typed builders,
    except int8 of a model that is already quantized (its Q/DQ nodes are the precision)."""
    return strongly_typed and precision in CONVERTED and not (precision == "int8" and has_qdq)


@functools.lru_cache(maxsize=1)
def converter_versions() -> dict[str, str]:
    import onnx
    import onnxconverter_common
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxconverter_common": onnxconverter_common.__version__,
            "onnxruntime": onnxruntime.__version__}


class ConvertedModels:
    """Prepared ONNX files under CACHE/converted/<key>.onnx (renamed input dims, converted precision),
    each written once, atomically, with the one-line notes of what was done in <key>.notes.json."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "converted"

    def key(self, source_sha256: str, precision: str | None, calibration_digest: str | None,
            renames: Sequence[Any] = ()) -> str:
        document: dict[str, Any] = {"source": source_sha256, "precision": precision,
                                    "calibration": calibration_digest, "converters": converter_versions(),
                                    "fleetbuild": CONVERSION_VERSION}
        if renames:
            document["renames"] = [[r.input, r.index, r.new] for r in renames]
        return hashlib.sha256(canonical_json(document)).hexdigest()

    def convert(self, source: Path, source_sha256: str, precision: str | None, calibration: Sequence[Path] = (),
                calibration_digest: str | None = None, renames: Sequence[Any] = ()) -> tuple[Path, list[str]]:
        """(path, notes) of `source` with `renames` applied and converted to `precision` (None: kept)."""
        key = self.key(source_sha256, precision, calibration_digest, renames)
        dest, notes_file = self.root / f"{key}.onnx", self.root / f"{key}.notes.json"
        if dest.exists():
            try:
                return dest, json.loads(notes_file.read_text("utf-8"))
            except (OSError, ValueError):
                return dest, []
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=self.root)
        os.close(fd)
        notes = [f"renamed input dims: {'; '.join(r.text() for r in renames)}"] if renames else []
        try:
            with warnings.catch_warnings(record=True) as caught, _collect_logging() as logged:
                warnings.simplefilter("always")
                current = source
                if renames:
                    rename_dims(source, Path(tmp), renames)
                    current = Path(tmp)
                if precision == "fp16":
                    notes += to_fp16(current, Path(tmp), source.name)
                elif precision == FP16_EMULATED:
                    fp16_emulation(current, Path(tmp))
                elif precision == "int8":
                    to_qdq_int8(current, Path(tmp), calibration)
                elif precision is not None:
                    raise ConversionError(f"no conversion to {precision} for strongly typed builders")
            notes += summarize_warnings(precision or "model", [*caught, *logged])
            write_json_atomic(notes_file, notes)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest, notes


class _Record:
    """A logging record seen as a warning (message, category) for summarize_warnings."""

    def __init__(self, record: logging.LogRecord) -> None:
        self.message, self.category = record.getMessage(), type(record.levelname, (), {})


@contextlib.contextmanager
def _collect_logging() -> Iterator[list]:
    """Warnings that converters log (onnxruntime.quantization logs on the root logger) are kept
    for the job's notes instead of reaching stderr."""
    records: list = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(_Record(record))

    root = logging.getLogger()
    handler = Keep(logging.WARNING)
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)


_CLAMPED = re.compile(r"the float32 number (\S+) will be truncated to (\S+)")


def summarize_warnings(label: str, caught: Sequence[Any]) -> list[str]:
    """One line per kind of warning a converter raised (onnxconverter-common warns once per clamped
    constant: 172 lines for one small OCR model), instead of a flood on stderr."""
    clamped: list[float] = []
    others: dict[str, int] = {}
    for item in caught:
        text = str(item.message)
        match = _CLAMPED.search(text)
        if match:
            try:
                clamped.append(abs(float(match.group(1))))
            except ValueError:
                clamped.append(0.0)
            continue
        first = text.strip().splitlines()[0][:160] if text.strip() else item.category.__name__
        others[first] = others.get(first, 0) + 1
    lines = []
    if clamped:
        big = sum(1 for value in clamped if value > 1.0)
        lines.append(f"{label}: {len(clamped)} constants clamped to the fp16 range ({big} large ones to ±1e4, "
                     f"{len(clamped) - big} tiny ones to ±1e-7)")
    lines += [f"{label}: {text}" + (f" (x{count})" if count > 1 else "") for text, count in others.items()]
    return lines


def rename_dims(source: Path, dest: Path, renames: Sequence[Any]) -> None:
    """Give input dims new symbolic names (the graph's computation is untouched)."""
    import onnx

    model = onnx.load(str(source))
    inputs = {value.name: value for value in model.graph.input}
    for rename in renames:
        inputs[rename.input].type.tensor_type.shape.dim[rename.index].dim_param = rename.new
    onnx.save(model, str(dest))


FP16_ROUNDS = 4              # re-conversions with more nodes kept in fp32 before giving up


def to_fp16(source: Path, dest: Path, label: str = "") -> list[str]:
    """FP16 with graph inputs and outputs kept float32; returns notes of what was kept in fp32.

    onnxconverter-common leaves the model's own Cast(to=float) nodes alone, so a tensor cast from int
    to float can meet fp16 weights (TensorRT: "IMatrixMultiplyLayer must have same input types"):
    such a cast is made a cast to float16 when a node it feeds also takes an fp16 tensor. Casts that
    feed only other casts (the converter's own, around ops it keeps in float) stay as they are.
    A node still left with mixed float/float16 inputs (the converter misses some, e.g. after a Relu
    of such a cast, or inside If branches) is kept in fp32 (the converter's node block list) and the
    model converted again; where the converter still hands a kept node a float16 weight, a Cast to
    float is put in front of it. One that stays mixed fails the conversion, naming the node."""
    import onnx
    from onnxconverter_common import float16

    from fleetbuild.models.typecheck import mixed_types

    label = label or source.name
    try:
        model = onnx.load(str(source))
        for index, node in enumerate(all_nodes(model.graph)):
            if not node.name:                  # the block list names nodes
                node.name = f"{node.op_type}__{index}"
        casts = {node.name for node in all_nodes(model.graph) if node.op_type == "Cast"}
        blocked: list[str] = []
        for _ in range(FP16_ROUNDS):
            converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked)
            _fix_float_casts(converted, casts)
            mixed = mixed_types(converted)
            if mixed and all(m.node in blocked for m in mixed):
                _cast_to_float(converted, mixed)
                mixed = mixed_types(converted)
            if not mixed:
                break
            blocked += [m.node for m in mixed if m.node not in blocked]
        else:
            raise ConversionError(f"FP16 conversion of {label} leaves mixed float/float16 inputs on "
                                  + ", ".join(m.text() for m in mixed[:3]) + (" ..." if len(mixed) > 3 else ""))
        onnx.save(converted, str(dest))
    except ConversionError:
        raise
    except Exception as err:
        raise ConversionError(f"FP16 conversion of {label} failed: {type(err).__name__}: {err}") from err
    if not blocked:
        return []
    return [f"fp16: kept {len(blocked)} node{'s' if len(blocked) > 1 else ''} in fp32, where the converter left "
            f"float and float16 inputs mixed: {', '.join(_short(name) for name in blocked[:5])}"
            + (" ..." if len(blocked) > 5 else "")]


def _cast_to_float(model: Any, mixed: Sequence[Any]) -> None:
    """A Cast(to=float) in front of each float16 input of the kept-in-fp32 nodes that still mix types."""
    import onnx
    from onnx import helper

    wanted = {m.node: set(m.half_inputs) for m in mixed}
    for graph in _graphs(model.graph):
        nodes = []
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name and name in wanted.get(node.name, ()):
                    cast = f"{node.name}__{index}__to_fp32"
                    nodes.append(helper.make_node("Cast", [name], [cast], to=onnx.TensorProto.FLOAT, name=cast))
                    node.input[index] = cast
            nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)


def _graphs(graph: Any) -> Iterator[Any]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == attr.GRAPH else list(attr.graphs)):
                yield from _graphs(sub)


def _short(name: str) -> str:
    """A node name for a note: TensorFlow-converted names run to hundreds of characters."""
    return name if len(name) <= 60 else name[:57] + "..."


def _fix_float_casts(model: Any, original_casts: set[str]) -> None:
    import onnx

    half = onnx.TensorProto.FLOAT16
    fp16 = {t.name for t in model.graph.initializer if t.data_type == half}
    fp16 |= {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == half}
    consumers: dict[str, list[Any]] = {}
    for node in all_nodes(model.graph):
        if node.op_type == "Constant" and any(a.name == "value" and a.t.data_type == half for a in node.attribute):
            fp16.update(node.output)
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {value.name for value in model.graph.output}
    for node in all_nodes(model.graph):
        if node.op_type != "Cast" or node.name not in original_casts or set(node.output) & outputs:
            continue
        to = next((a for a in node.attribute if a.name == "to"), None)
        if to is None or to.i != onnx.TensorProto.FLOAT:
            continue
        if any(user.op_type != "Cast" and any(name in fp16 for name in user.input if name != node.output[0])
               for user in consumers.get(node.output[0], ())):
            to.i = half
        else:                        # the converter marked its output fp16 all the same: say float
            for value in model.graph.value_info:
                if value.name in node.output and value.type.tensor_type.elem_type == half:
                    value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def fp16_emulation(source: Path, dest: Path) -> None:
    """An fp32 model that computes what the fp16 conversion computes, for ONNX Runtime on the CPU.

    ONNX Runtime runs most fp16 ops in fp32 and drops the rounding between them, so the converted
    model itself hides fp16's rounding and overflow. Here every weight is rounded as the converter
    rounds it (tiny values to 1e-7, large ones to 1e4) and every float tensor of the main graph is
    rounded through float16 after the node that makes it (inputs too; ops the converter keeps in
    float32 are left alone): a value above 65504 becomes inf, as in the engine.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnxconverter_common import float16

    try:
        model = onnx.load(str(source))
        for tensor in model.graph.initializer:
            if tensor.data_type == onnx.TensorProto.FLOAT:
                values = numpy_helper.to_array(tensor)
                rounded = float16.convert_np_to_float16(np.atleast_1d(values)).astype(np.float32)
                tensor.CopyFrom(numpy_helper.from_array(rounded.reshape(values.shape), tensor.name))
        inferred = onnx.shape_inference.infer_shapes(model)
        floats = {v.name for v in list(inferred.graph.value_info) + list(inferred.graph.input)
                  + list(inferred.graph.output) if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
        initializers = {t.name for t in model.graph.initializer}
        blocked = set(float16.DEFAULT_OP_BLOCK_LIST)
        renamed: dict[str, str] = {}
        nodes = []

        def rounding(name: str) -> list:
            raw, half = f"{name}__fp32", f"{name}__fp16"
            renamed[name] = raw
            return [helper.make_node("Cast", [raw], [half], to=onnx.TensorProto.FLOAT16, name=f"{name}__round16"),
                    helper.make_node("Cast", [half], [name], to=onnx.TensorProto.FLOAT, name=f"{name}__round32")]

        for value in model.graph.input:
            if value.name in floats and value.name not in initializers:
                nodes += [helper.make_node("Cast", [value.name], [f"{value.name}__fp16"], to=onnx.TensorProto.FLOAT16),
                          helper.make_node("Cast", [f"{value.name}__fp16"], [f"{value.name}__rounded"],
                                           to=onnx.TensorProto.FLOAT)]
                renamed[value.name] = f"{value.name}__rounded"
        inputs_renamed = dict(renamed)
        for node in model.graph.node:
            node.input[:] = [inputs_renamed.get(name, name) for name in node.input]
            extra = []
            if node.op_type not in blocked:
                for index, name in enumerate(node.output):
                    if name in floats:
                        extra += rounding(name)
                        node.output[index] = renamed[name]
            nodes += [node] + extra
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.save(model, str(dest))
    except Exception as err:
        raise ConversionError(f"fp16 emulation of {source.name} failed: {type(err).__name__}: {err}") from err


class _Batches:
    """onnxruntime CalibrationDataReader over .npy (single input) / .npz (keyed by input) files."""

    def __init__(self, files: Sequence[Path], input_names: Sequence[str]) -> None:
        import numpy as np

        self.items = []
        for path in files:
            if path.suffix == ".npz":
                with np.load(path) as data:
                    batch = {name: data[name] for name in input_names if name in data}
            else:
                if len(input_names) != 1:
                    raise ConversionError(f"{path.name} is a .npy but the model has inputs "
                                          f"{', '.join(input_names)}: use .npz files keyed by input name")
                batch = {input_names[0]: np.load(path)}
            missing = [n for n in input_names if n not in batch]
            if missing:
                raise ConversionError(f"{path.name} has no array for input {', '.join(missing)}")
            self.items.append(batch)
        self._iter = iter(self.items)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.items)


def to_qdq_int8(source: Path, dest: Path, calibration: Sequence[Path]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ConversionError("int8 for a strongly typed builder needs calibration data (or a Q/DQ model)")
    model = onnx.load(str(source), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    batches = _Batches(calibration, names)

    class Reader(CalibrationDataReader):
        def get_next(self):
            return batches.get_next()

        def rewind(self):
            batches.rewind()

    try:
        quantize_static(str(source), str(dest), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "QuantizeBias": False})
    except ConversionError:
        raise
    except Exception as err:
        raise ConversionError(f"INT8 Q/DQ quantization of {source.name} failed: {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}") from err
