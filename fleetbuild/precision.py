"""Precision conversion for strongly typed builders (TensorRT 11, TensorRT-RTX).

They take precision from the ONNX itself, so the controller converts before staging: FP16 with
onnxconverter-common (graph inputs/outputs stay float32), INT8 as explicit Q/DQ with onnxruntime's
static quantization over the calibration batches (symmetric, as TensorRT requires; biases left in
float, since TensorRT-RTX refuses int32-quantized biases). Converted models are cached by a key of
source hash, precision, calibration digest and converter versions; the converted model's hash is
what enters the build key. This is the only module importing the conversion libraries.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Sequence

from fleetbuild.buildkey import canonical_json
from fleetbuild.errors import FleetbuildError

CONVERTED = ("fp16", "int8")


class ConversionError(FleetbuildError):
    """The model could not be converted; the job fails with this reason."""


def needs_conversion(precision: str, strongly_typed: bool) -> bool:
    return strongly_typed and precision in CONVERTED


def converter_versions() -> dict[str, str]:
    import onnx
    import onnxconverter_common
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxconverter_common": onnxconverter_common.__version__,
            "onnxruntime": onnxruntime.__version__}


class ConvertedModels:
    """Converted ONNX files under CACHE/converted/<key>.onnx, each written once, atomically."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "converted"

    def key(self, source_sha256: str, precision: str, calibration_digest: str | None) -> str:
        return hashlib.sha256(canonical_json({"source": source_sha256, "precision": precision,
                                              "calibration": calibration_digest,
                                              "converters": converter_versions()})).hexdigest()

    def convert(self, source: Path, source_sha256: str, precision: str, calibration: Sequence[Path] = (),
                calibration_digest: str | None = None) -> Path:
        dest = self.root / f"{self.key(source_sha256, precision, calibration_digest)}.onnx"
        if dest.exists():
            return dest
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=self.root)
        os.close(fd)
        try:
            if precision == "fp16":
                to_fp16(source, Path(tmp))
            elif precision == "int8":
                to_qdq_int8(source, Path(tmp), calibration)
            else:
                raise ConversionError(f"no conversion to {precision} for strongly typed builders")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return dest


def to_fp16(source: Path, dest: Path) -> None:
    import onnx
    from onnxconverter_common import float16

    try:
        model = onnx.load(str(source))
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
        onnx.save(converted, str(dest))
    except Exception as err:
        raise ConversionError(f"FP16 conversion of {source.name} failed: {type(err).__name__}: {err}") from err


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
