"""TensorRT for RTX: ahead-of-time builds for a chosen compute capability, no GPU needed."""
from ..errors import BuildFailed, EnvironmentFailure
from .engine import EngineBuild

FLAVOR = "tensorrt-rtx"


def import_module():
    try:
        import tensorrt_rtx
    except ImportError as err:
        raise EnvironmentFailure("TensorRT-RTX's Python bindings are not importable here ({}); "
                                 "pip install tensorrt-rtx-cu13".format(err))
    return tensorrt_rtx


def capability_member(trt, cc):
    name = "SM" + cc.replace(".", "")
    member = getattr(trt.ComputeCapability, name, None)
    if member is None:
        known = sorted((n[2:-1] + "." + n[-1] for n in dir(trt.ComputeCapability) if n.startswith("SM")),
                       key=lambda cc: tuple(int(x) for x in cc.split(".")))
        raise BuildFailed("TensorRT-RTX {} cannot target compute capability {} (it targets {})".format(
            trt.__version__, cc, ", ".join(known)))
    return member


class RtxBuild(EngineBuild):
    def target(self, config):
        member = capability_member(self.trt, self.spec["compute_capability"])
        config.num_compute_capabilities = 1
        config.set_compute_capability(member, 0)

    def load_timing_cache(self, config):
        return None  # a no-op in TensorRT-RTX


def build(spec, log):
    trt = import_module()
    if not spec.get("compute_capability"):
        raise BuildFailed("TensorRT-RTX needs the target compute capability in the spec")
    capability_member(trt, spec["compute_capability"])  # refuse before parsing anything
    result = RtxBuild(trt, FLAVOR, spec, log, strongly_typed=True).run()
    result["compute_capability"] = spec["compute_capability"]
    return result
