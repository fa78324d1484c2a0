"""Which engine of a release a device can load, and why the others cannot (Python 3.6, stdlib).

Rules (../shared/TENSORRT_FACTS.md): the same TensorRT flavor; the same TensorRT version, or a
version-compatible engine (8.6+) and a device runtime at least as new; the same compute capability,
or a hardware-compatible engine that covers the device (ampere_plus: CC 8.0 and newer; never on
Jetson). Among the engines that fit, the precision preference decides.
"""

DEFAULT_PREFERENCE = ("fp16", "bf16", "fp32", "tf32", "int8", "fp8")


class NoMatch(Exception):
    """Nothing fits; `reasons` holds one line per candidate."""

    def __init__(self, message, reasons):
        Exception.__init__(self, message)
        self.reasons = reasons


def version_tuple(text):
    out = []
    for part in str(text or "").split("."):
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def same_version(a, b):
    """10.3.0.26 and 10.3.0 are the same release (a device may report no build number)."""
    x, y = version_tuple(a), version_tuple(b)
    n = min(len(x), len(y))
    return n > 0 and x[:n] == y[:n]


def short(version):
    return ".".join(str(v) for v in version_tuple(version)[:2]) if version else "?"


def device_view(facts):
    """(compute capabilities, {flavor: version}, is_jetson) of a device, from its probe facts."""
    ccs = sorted(set(g.get("compute_capability") for g in facts.get("gpus") or [] if g.get("compute_capability")))
    versions = dict((i["flavor"], i["version"]) for i in facts.get("tensorrt") or [] if i.get("version"))
    return ccs, versions, bool(facts.get("jetson"))


def verdict(entry, facts):
    """None when the device can load the entry's engine, else (what, fix)."""
    ccs, versions, jetson = device_view(facts)
    trt = entry.get("tensorrt") or {}
    compat = entry.get("compat") or {}
    flavor, version, cc = trt.get("flavor"), trt.get("version"), entry.get("compute_capability")
    have = versions.get(flavor)
    if have is None:
        return ("flavor mismatch", "install {} on the device, or publish a build for {}".format(
            flavor, " or ".join(sorted(versions)) or "its TensorRT"))
    if not same_version(have, version):
        newer = version_tuple(have) >= version_tuple(version)
        if not (compat.get("version_compatible") and newer):
            return ("version mismatch", "publish a build for TensorRT {}, or a version-compatible engine "
                    "(version_compatible = true: it loads in the same or a newer TensorRT)".format(short(have)))
    if cc not in ccs:
        level = compat.get("hardware_compatibility_level") or "none"
        covered = (level == "ampere_plus" and not jetson and ccs and
                   all(version_tuple(c) >= (8, 0) for c in ccs) and version_tuple(cc) >= (8, 0))
        if not covered:
            ampere = (flavor == "tensorrt" and not jetson and ccs and
                      all(version_tuple(c) >= (8, 0) for c in ccs))       # not in TensorRT-RTX
            return ("compute capability mismatch", "publish a build for CC {} (a target with this GPU){}".format(
                ", ".join(ccs) or "?", ", or an engine with hardware_compatibility_level = \"ampere_plus\" "
                "(CC 8.0 and newer)" if ampere else ""))
    return None


def describe(job_id, entry, facts, problem):
    ccs, versions, _ = device_view(facts)
    trt = entry.get("tensorrt") or {}
    have = versions.get(trt.get("flavor")) or "none"
    what, fix = problem
    return "{}: built for {} {} on CC {}; this device has {} {} on CC {} - {}: {}".format(
        job_id, "TensorRT" if trt.get("flavor") == "tensorrt" else trt.get("flavor"), short(trt.get("version")),
        entry.get("compute_capability"), "TensorRT" if trt.get("flavor") == "tensorrt" else trt.get("flavor"),
        have, ", ".join(ccs) or "?", what, fix)


def choose(index, model, facts, preference=None):
    """(job id, entry, reasons for the others) of the engine this device should install."""
    order = list(preference or DEFAULT_PREFERENCE)
    fitting, reasons = [], []
    candidates = [(job, e) for job, e in sorted(index["entries"].items()) if job.split("/")[0] == model]
    if not candidates:
        raise NoMatch("release {} {} has no engine of model {} (it has: {})".format(
            index.get("project"), index.get("version"), model,
            ", ".join(sorted(set(j.split("/")[0] for j in index["entries"]))) or "nothing"), [])
    for job_id, entry in candidates:
        precision = (entry.get("precision") or job_id.split("/")[2]).split("+")[0]
        problem = verdict(entry, facts)
        if problem is not None:
            reasons.append(describe(job_id, entry, facts, problem))
        elif preference and precision not in order:
            reasons.append("{}: {} is not in the precisions asked for ({})".format(job_id, precision, ", ".join(order)))
        else:
            fitting.append((order.index(precision) if precision in order else len(order), job_id, entry))
    if not fitting:
        ccs, versions, _ = device_view(facts)
        raise NoMatch("no engine of {} in {} {} fits this device (CC {}, {})".format(
            model, index.get("project"), index.get("version"), ", ".join(ccs) or "unknown",
            ", ".join("{} {}".format("TensorRT" if k == "tensorrt" else k, v) for k, v in sorted(versions.items()))
            or "no TensorRT"), reasons)
    fitting.sort(key=lambda item: (item[0], item[1]))
    _, job_id, entry = fitting[0]
    reasons += ["{}: fits, but {} is preferred".format(j, job_id) for _, j, _ in fitting[1:]]
    return job_id, entry, reasons
