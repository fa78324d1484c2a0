"""The few CUDA runtime calls the worker needs, through ctypes on libcudart (which TensorRT itself
needs, so every TensorRT host has it): device count and compute capability, host-to-device copies
of INT8 calibration batches, and the copies and synchronization the health gate's inference needs.
No numpy, no pycuda."""
import ctypes
import ctypes.util
import glob
import os

from .errors import EnvironmentFailure

CC_MAJOR, CC_MINOR = 75, 76           # cudaDevAttrComputeCapabilityMajor / Minor
MEMCPY_HOST_TO_DEVICE, MEMCPY_DEVICE_TO_HOST = 1, 2
SONAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so.10.2")


class CudaRuntime(object):
    def __init__(self, env=None):
        env = os.environ if env is None else env
        candidates = [env.get("FLEETBUILD_CUDART")] if env.get("FLEETBUILD_CUDART") else []
        found = ctypes.util.find_library("cudart")
        candidates += ([found] if found else []) + list(SONAMES)
        candidates += sorted(glob.glob("/usr/local/cuda/lib64/libcudart.so*"))
        self.lib, errors = None, []
        for name in candidates:
            try:
                self.lib = ctypes.CDLL(name)
                self.path = name
                break
            except OSError as err:
                errors.append(str(err))
        if self.lib is None:
            raise EnvironmentFailure("CUDA runtime library (libcudart) not found; set FLEETBUILD_CUDART "
                                     "to its path or add the CUDA lib dir to LD_LIBRARY_PATH")

    def _check(self, status, call):
        if status != 0:
            raise EnvironmentFailure("CUDA {} failed with error {}".format(call, status))

    def device_count(self):
        count = ctypes.c_int(0)
        status = self.lib.cudaGetDeviceCount(ctypes.byref(count))
        return count.value if status == 0 else 0

    def compute_capability(self, device=0):
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major), CC_MAJOR, device), "cudaDeviceGetAttribute")
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), CC_MINOR, device), "cudaDeviceGetAttribute")
        return "{}.{}".format(major.value, minor.value)

    def malloc(self, size):
        pointer = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(pointer), ctypes.c_size_t(size)), "cudaMalloc")
        return pointer.value

    def copy_to_device(self, pointer, data):
        buffer = ctypes.create_string_buffer(data, len(data))
        self._check(self.lib.cudaMemcpy(ctypes.c_void_p(pointer), buffer, ctypes.c_size_t(len(data)),
                                        MEMCPY_HOST_TO_DEVICE), "cudaMemcpy")

    def free(self, pointer):
        self.lib.cudaFree(ctypes.c_void_p(pointer))

    def copy_to_host(self, pointer, size):
        buffer = ctypes.create_string_buffer(size)
        self._check(self.lib.cudaMemcpy(buffer, ctypes.c_void_p(pointer), ctypes.c_size_t(size),
                                        MEMCPY_DEVICE_TO_HOST), "cudaMemcpy")
        return buffer.raw

    def synchronize(self):
        self._check(self.lib.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
