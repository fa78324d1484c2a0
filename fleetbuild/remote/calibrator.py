"""INT8 entropy calibration for full TensorRT <= 10.x: batches from .npy/.npz files, copied to the
GPU through cudart. One file is one batch (.npy for single-input models, .npz keyed by input name)."""
import os

from . import npy
from .errors import SpecError
from .fsutil import write_bytes_atomic


def load_batches(paths, input_names):
    batches = []
    for path in paths:
        if not os.path.exists(path):
            raise SpecError("calibration file not found: {}".format(path))
        try:
            arrays = npy.load(path)
        except (npy.NpyError, IOError, OSError, ValueError) as err:
            raise SpecError("calibration file {} is unreadable: {}".format(path, err))
        if None in arrays:
            if len(input_names) != 1:
                raise SpecError("{} is a .npy but the model has {} inputs ({}): use .npz keyed by input name".format(
                    path, len(input_names), ", ".join(input_names)))
            arrays = {input_names[0]: arrays[None]}
        missing = [n for n in input_names if n not in arrays]
        if missing:
            raise SpecError("{} has no array for input {}".format(path, ", ".join(missing)))
        batches.append(arrays)
    if not batches:
        raise SpecError("int8 calibration needs at least one batch file")
    return batches


def make_calibrator(trt, batches, cache_path, cuda):
    """An IInt8EntropyCalibrator2 over `batches` (list of {input: npy.Array})."""
    sizes = {}
    for batch in batches:
        for name, array in batch.items():
            sizes[name] = max(sizes.get(name, 0), array.nbytes)

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device = {name: cuda.malloc(size) for name, size in sizes.items()}

        def get_batch_size(self):
            first = batches[0][sorted(batches[0])[0]]
            return first.shape[0] if first.shape else 1

        def get_batch(self, names, *args):
            if self.index >= len(batches):
                return None
            batch = batches[self.index]
            self.index += 1
            for name in names:
                cuda.copy_to_device(self.device[name], batch[name].data)
            return [int(self.device[name]) for name in names]

        def read_calibration_cache(self, *args):
            if cache_path and os.path.exists(cache_path):
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache, *args):
            if cache_path:
                write_bytes_atomic(cache_path, bytes(cache))

        def release(self):
            for pointer in self.device.values():
                cuda.free(pointer)
            self.device = {}

    return Calibrator()
