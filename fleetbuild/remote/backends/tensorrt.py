"""Full TensorRT (8.2 -> 11.x): builds for the GPU it runs on, which must match the job's CC."""
from ..errors import EnvironmentFailure
from .engine import EngineBuild, major_version

FLAVOR = "tensorrt"


def import_module():
    try:
        import tensorrt
    except ImportError as err:
        raise EnvironmentFailure("TensorRT's Python bindings are not importable here ({}); install them for "
                                 "this interpreter or set fleetbuild_python".format(err))
    return tensorrt


def check_gpu(spec, cuda):
    if cuda.device_count() < 1:
        raise EnvironmentFailure("no CUDA GPU visible: full TensorRT builds on the GPU it targets")
    cc = cuda.compute_capability(0)
    if spec.get("compute_capability") and cc != spec["compute_capability"]:
        raise EnvironmentFailure("this host's GPU is compute capability {}, the job targets {}".format(
            cc, spec["compute_capability"]))
    return cc


def build(spec, log):
    from ..cudart import CudaRuntime

    trt = import_module()
    cc = check_gpu(spec, CudaRuntime())
    result = EngineBuild(trt, FLAVOR, spec, log, strongly_typed=major_version(trt) >= 11).run()
    result["compute_capability"] = cc
    return result
