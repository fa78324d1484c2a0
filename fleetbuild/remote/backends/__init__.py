"""Engine builders (TensorRT, TensorRT-RTX). `load(backend)` returns the module for a spec's
backend name. Like all of remote/: relative imports, the standard library and TensorRT's bindings."""
from ..errors import SpecError

NAMES = ("tensorrt", "tensorrt-rtx")


def load(backend):
    if backend == "tensorrt":
        from . import tensorrt as module
    elif backend == "tensorrt-rtx":
        from . import tensorrt_rtx as module
    else:
        raise SpecError("unknown backend {!r} (expected one of: {})".format(backend, ", ".join(NAMES)))
    return module
