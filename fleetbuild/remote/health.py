"""The health gate an agent (or `pull --health`) runs on a freshly installed engine before it
counts (Python 3.6, standard library + the device's own TensorRT and CUDA runtime).

Checks, in order, each with its time:
- deserialize: the device's TensorRT runtime loads the engine (with its plugin libraries): the
  field's most common failure, a TensorRT version or compute capability mismatch or a missing
  plugin library, shows here. A device whose Python has no TensorRT skips it, saying so.
- golden: the release's golden samples (inputs at the profile's opt shape, and the outputs ONNX
  Runtime computed from the fp32 model) run through the engine --health-runs times: every output
  must reach the entry's cosine similarity; p50/p99 latency (and, on a Jetson, watts and millijoules
  per inference from its INA3221 rails) are measured, and held against --max-latency-ms (p99),
  --max-watts and --max-slowdown (p50 against the engine it replaces, from that one's own verdict).
- command: the user's --health-cmd (argv, no shell; FLEETBUILD_ENGINE and FLEETBUILD_MODEL in its
  environment), e.g. restart the service and probe it, within --health-timeout seconds.
The verdict: {"ok", "reason", "checks": [{"name", "ok", "detail", "seconds"}], "figures": {...}}.
"""
import ctypes
import os
import re
import shlex
import subprocess
import time

from .fsutil import read_json, write_json_atomic
from .install import paths, rollback
from .names import check_name, inside

# "1: [stdArchiveReader.cpp::StdArchiveReader::42] Error Code 1: Serialization (what went wrong)"
_TRT_ERROR = re.compile(r"^\d+: \[[^\]]*\] Error Code \d+: \w+ \((.*)\)\s*$", re.S)


def verdict_path(out, model):
    """OUT/<model>.health.json: the gate's last verdict on this device for `model` (`installed` shows it)."""
    return inside(out, os.path.join(out, check_name("model", model) + ".health.json"))


def remember(out, model, verdict, version, sha256):
    record = dict(verdict, version=version, sha256=sha256, time=round(time.time(), 3))
    write_json_atomic(verdict_path(out, model), record)
    return record


def restore(out, model, installed_version):
    """After a failed gate: the previous engine back (rollback), or, when there was none, the failed
    engine taken out. Says which."""
    if installed_version is None:
        for suffix in (".plan", ".manifest.json"):
            try:
                os.unlink(os.path.join(out, model + suffix))
            except OSError:
                pass
        return "removed it (no engine before it)"
    rollback(out, model)
    return "restored {}".format(installed_version)


class HealthGate(object):
    def __init__(self, command=None, timeout=60.0, deserialize=True, runs=20, max_latency_ms=None,
                 max_watts=None, max_slowdown=None):
        self.command = shlex.split(command) if isinstance(command, str) else command
        self.timeout, self.deserialize, self.runs = timeout, deserialize, runs
        self.max_latency_ms, self.max_watts, self.max_slowdown = max_latency_ms, max_watts, max_slowdown

    def check(self, out, model):
        engine, manifest_path = paths(out, model)
        try:
            manifest = read_json(manifest_path)
        except (IOError, OSError, ValueError):
            manifest = {}
        checks, figures, loaded = [], {}, {}
        if self.deserialize:
            checks.append(_timed("deserialize", lambda: _deserialize(engine, manifest, loaded)))
        golden = (manifest.get("release") or {}).get("golden")
        if golden and loaded and all(c["ok"] for c in checks):
            previous = _previous_p50(out, model)
            checks.append(_timed("golden", lambda: self._golden(loaded, golden, figures, previous)))
        if self.command and all(c["ok"] for c in checks):
            checks.append(_timed("command", lambda: self._run(engine, model)))
        failed = [c for c in checks if not c["ok"]]
        reason = "{}: {}".format(failed[0]["name"], failed[0]["detail"]) if failed else ""
        return {"ok": not failed, "reason": reason, "checks": checks, "figures": figures}

    def _golden(self, loaded, golden, figures, previous_p50):
        from . import infer, power
        from .cudart import CudaRuntime
        from .errors import EnvironmentFailure
        from .npy import NpyError, load

        try:
            inputs = {name: load(path)[None] for name, path in golden["inputs"].items()}
            expected = {name: load(path)[None] for name, path in golden["outputs"].items()}
            sensors = power.rails()
            drawn = []
            if sensors:
                _sample_power(sensors, drawn)
            outputs, times = infer.run(loaded["trt"], loaded["engine"], inputs, self.runs, CudaRuntime())
            if sensors:
                _sample_power(sensors, drawn)
        except infer.Unsupported as err:
            return True, "skipped: {}".format(err)
        except (infer.InferError, EnvironmentFailure, NpyError, IOError, OSError) as err:
            return False, "the engine did not run the golden samples: {}".format(err)
        p50, p99 = 1000 * infer.percentile(times, 0.5), 1000 * infer.percentile(times, 0.99)
        figures.update(p50_ms=round(p50, 3), p99_ms=round(p99, 3), runs=len(times))
        if drawn:
            average = sum(drawn) / len(drawn)
            figures.update(watts=round(average, 3), mj_per_inference=round(1000 * average * sum(times) / len(times), 3))
        if previous_p50 is not None:
            figures["replaced_p50_ms"] = previous_p50
        threshold, worst = golden.get("cosine") or 0.0, None
        cosines = {}
        for name, reference in expected.items():
            if name not in outputs:
                return False, "the engine has no output {}".format(name)
            got = outputs[name][2]
            want = infer.values(reference.data, infer.NPY.get(reference.dtype, "f"))
            if len(got) != len(want):
                return False, "output {} has {} values, the golden sample {}".format(name, len(got), len(want))
            cosines[name] = round(infer.cosine(got, want), 6)
            if worst is None or cosines[name] < cosines[worst]:
                worst = name
        figures["cosine"] = cosines
        if worst is not None and cosines[worst] < threshold:
            return False, "output {} is off its golden sample: cosine {:.4f} < {:g}".format(worst, cosines[worst],
                                                                                            threshold)
        if self.max_latency_ms is not None and p99 > self.max_latency_ms:
            return False, "p99 latency {:.2f} ms over the budget of {:g} ms".format(p99, self.max_latency_ms)
        if self.max_watts is not None and figures.get("watts") is not None and figures["watts"] > self.max_watts:
            return False, "draws {:.1f} W, over the budget of {:g} W".format(figures["watts"], self.max_watts)
        if self.max_slowdown is not None and previous_p50 and p50 > previous_p50 * (1 + self.max_slowdown):
            return False, "p50 latency {:.2f} ms, {:.0f} % slower than the {:.2f} ms of the engine it replaces".format(
                p50, 100 * (p50 / previous_p50 - 1), previous_p50)
        return True, "{} output(s) within cosine {:g} (worst {:.4f}); p50 {:.2f} ms, p99 {:.2f} ms{}".format(
            len(cosines), threshold, cosines[worst] if worst else 1.0, p50, p99,
            ", {:.1f} W".format(figures["watts"]) if "watts" in figures else "")

    def _run(self, engine, model):
        env = dict(os.environ, FLEETBUILD_ENGINE=engine, FLEETBUILD_MODEL=model)
        try:
            proc = subprocess.run(self.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return False, "{} did not finish within {:g} s".format(self.command[0], self.timeout)
        except OSError as err:
            return False, "{} cannot run: {}".format(self.command[0], err.strerror or err)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip().splitlines()
            return False, "{} exited {}{}".format(self.command[0], proc.returncode,
                                                  ": " + said[-1][:200] if said else "")
        return True, "{} exited 0".format(self.command[0])


def _sample_power(sensors, drawn):
    from .power import watts

    value = watts(sensors)
    if value is not None:
        drawn.append(value)


def _previous_p50(out, model):
    """The p50 of the engine being replaced, from its own healthy verdict (None when unknown)."""
    try:
        found = read_json(verdict_path(out, model))
    except (IOError, OSError, ValueError):
        return None
    return (found.get("figures") or {}).get("p50_ms") if isinstance(found, dict) and found.get("ok") else None


def _timed(name, check):
    started = time.time()
    ok, detail = check()
    return {"name": name, "ok": ok, "detail": detail, "seconds": round(time.time() - started, 3)}


def _deserialize(engine, manifest, loaded):
    flavor = (manifest.get("tensorrt") or {}).get("flavor") if isinstance(manifest.get("tensorrt"), dict) else None
    module = "tensorrt_rtx" if flavor == "tensorrt-rtx" else "tensorrt"
    try:
        trt = __import__(module)
    except ImportError:
        return True, "skipped: no {} module in this Python to load the engine with".format(module)
    for library in ((manifest.get("release") or {}).get("plugins") or []):
        try:
            ctypes.CDLL(library)
        except OSError as err:
            return False, "plugin library {} does not load: {}".format(library, err)
    errors = []

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, message):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                errors.append(str(message))

    with open(engine, "rb") as handle:
        data = handle.read()
    runtime = trt.Runtime(Logger())
    engine_object = runtime.deserialize_cuda_engine(data)
    label = "{} {}".format("TensorRT-RTX" if module == "tensorrt_rtx" else "TensorRT", getattr(trt, "__version__", "?"))
    if engine_object is None:
        said = _TRT_ERROR.sub(r"\1", errors[-1]) if errors else ""
        return False, "{} cannot load it{}".format(label, ": " + said[:300] if said else "")
    loaded.update(trt=trt, engine=engine_object, runtime=runtime)
    return True, "loaded by {}".format(label)
