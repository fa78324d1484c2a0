"""Run an engine on golden inputs for the health gate, with the device's TensorRT and the CUDA
runtime through ctypes (Python 3.6, standard library: arrays are bytes, no numpy).

TensorRT's tensor API (8.5 and later): set each input's shape and address, execute_async_v3 on the
default stream, read each output back. Earlier releases (the Nano's 8.2) have only bindings; the
gate says so and skips the golden check there.
"""
import array
import math
import struct
import sys
import time

KINDS = {"FLOAT": ("f", 4, "float32"), "HALF": ("e", 2, "float16"), "INT32": ("i", 4, "int32"),
         "INT64": ("q", 8, "int64"), "INT8": ("b", 1, "int8"), "UINT8": ("B", 1, "uint8"), "BOOL": ("?", 1, "bool")}
NPY = {"float32": "f", "float16": "e", "int32": "i", "int64": "q", "int8": "b", "uint8": "B", "bool": "?",
       "float64": "d"}


class InferError(Exception):
    pass


class Unsupported(InferError):
    pass


def values(data, code):
    """bytes of little-endian elements -> a list of numbers."""
    if code in "fiqbBd" and sys.byteorder == "little":
        return array.array(code, data).tolist()
    return list(struct.unpack("<{}{}".format(len(data) // struct.calcsize(code), code), data))


def run(trt, engine, inputs, runs, cuda):
    """({output name: (numpy dtype name, shape, values)}, [seconds per run]) of `runs` executions of
    `engine` on `inputs` ({name: npy.Array})."""
    if not hasattr(engine, "num_io_tensors"):
        raise Unsupported("TensorRT {} has no tensor API (8.5+): golden samples are not run".format(
            getattr(trt, "__version__", "?")))
    context = engine.create_execution_context()
    if context is None:
        raise InferError("the engine gives no execution context (out of device memory?)")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    wanted = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    missing = sorted(set(wanted) - set(inputs))
    if missing:
        raise InferError("the golden samples have no input {}".format(", ".join(missing)))
    pointers, outputs = [], {}
    try:
        for name in wanted:
            code, size, _ = _kind(engine.get_tensor_dtype(name))
            given = inputs[name]
            data = given.data if NPY.get(given.dtype) == code else _convert(given, code)
            context.set_input_shape(name, tuple(given.shape))
            pointer = cuda.malloc(max(len(data), 1))
            pointers.append(pointer)
            cuda.copy_to_device(pointer, data)
            context.set_tensor_address(name, pointer)
        for name in names:
            if name in wanted:
                continue
            code, size, dtype = _kind(engine.get_tensor_dtype(name))
            shape = tuple(context.get_tensor_shape(name))
            count = 1
            for dim in shape:
                count *= dim
            pointer = cuda.malloc(max(count * size, 1))
            pointers.append(pointer)
            context.set_tensor_address(name, pointer)
            outputs[name] = (pointer, code, dtype, shape, count * size)
        times = []
        for _ in range(max(1, runs)):
            started = time.perf_counter()
            if not context.execute_async_v3(0):
                raise InferError("execute_async_v3 failed")
            cuda.synchronize()
            times.append(time.perf_counter() - started)
        found = {name: (dtype, shape, values(cuda.copy_to_host(pointer, nbytes), code))
                 for name, (pointer, code, dtype, shape, nbytes) in outputs.items()}
    finally:
        for pointer in pointers:
            cuda.free(pointer)
    return found, times


def _kind(dtype):
    name = getattr(dtype, "name", str(dtype)).split(".")[-1]
    if name not in KINDS:
        raise InferError("tensor type {} is not one the gate reads".format(name))
    return KINDS[name]


def _convert(given, code):
    source = NPY.get(given.dtype)
    if source is None:
        raise InferError("golden input of type {} cannot be fed".format(given.dtype))
    items = values(given.data, source)
    return struct.pack("<{}{}".format(len(items), code), *items)


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    if norm == 0:
        return 1.0 if not any(a) and not any(b) else 0.0
    return dot / norm


def percentile(times, fraction):
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]
