"""Precision conversion for strongly typed builders (TensorRT 11, TensorRT-RTX), and the cache of
converted models.

They take precision from the ONNX itself, so the controller converts before staging: FP16 with
onnxconverter-common (graph inputs/outputs stay float32), INT8 as explicit Q/DQ with onnxruntime's
static quantization over the calibration batches (symmetric, as TensorRT requires; biases left in
float, since TensorRT-RTX refuses int32-quantized biases). Converted models are cached by a key of
source hash, precision, calibration digest and converter versions; the converted model's hash is
what enters the build key. The fp16 conversion itself is fleetbuild.models.fp16; the opset
down-conversion fleetbuild.models.opset.
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
from fleetbuild.errors import ConversionError
from fleetbuild.filehash import write_json_atomic
from fleetbuild.models.fp16 import fp16_emulation, to_fp16

CONVERTED = ("fp16", "int8")
FP16_EMULATED = "fp16-emulated"   # an fp32 model that rounds like the fp16 one: for measuring accuracy
CONVERSION_VERSION = 5       # bump when what fleetbuild does around the converters changes (5: mixed types kept fp32)


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
            renames: Sequence[Any] = (), opset: int | None = None) -> str:
        document: dict[str, Any] = {"source": source_sha256, "precision": precision,
                                    "calibration": calibration_digest, "converters": converter_versions(),
                                    "fleetbuild": CONVERSION_VERSION}
        if renames:
            document["renames"] = [[r.input, r.index, r.new] for r in renames]
        if opset is not None:
            document["opset"] = opset
        return hashlib.sha256(canonical_json(document)).hexdigest()

    def convert(self, source: Path, source_sha256: str, precision: str | None, calibration: Sequence[Path] = (),
                calibration_digest: str | None = None, renames: Sequence[Any] = (),
                opset: int | None = None) -> tuple[Path, list[str]]:
        """(path, notes) of `source` with `renames` applied, down-converted to `opset` (None: kept) and
        converted to `precision` (None: kept)."""
        key = self.key(source_sha256, precision, calibration_digest, renames, opset)
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
                if opset is not None:
                    from fleetbuild.models.opset import downgrade

                    notes += downgrade(current, Path(tmp), opset, source.name)
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
