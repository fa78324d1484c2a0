"""The health gate an agent (or `pull --health`) runs on a freshly installed engine before it
counts (Python 3.6, standard library + the device's own TensorRT).

Checks, in order, each with its time:
- deserialize: the device's TensorRT runtime loads the engine (with its plugin libraries): the
  field's most common failure, a TensorRT version or compute capability mismatch or a missing
  plugin library, shows here. A device whose Python has no TensorRT skips it, saying so.
- command: the user's --health-cmd (argv, no shell; FLEETBUILD_ENGINE and FLEETBUILD_MODEL in its
  environment), e.g. restart the service and probe it, within --health-timeout seconds.
The verdict: {"ok", "reason", "checks": [{"name", "ok", "detail", "seconds"}]}.
"""
import ctypes
import os
import re
import shlex
import subprocess
import time

from .fsutil import read_json, write_json_atomic
from .names import check_name, inside

# "1: [stdArchiveReader.cpp::StdArchiveReader::42] Error Code 1: Serialization (what went wrong)"
_TRT_ERROR = re.compile(r"^\d+: \[[^\]]*\] Error Code \d+: \w+ \((.*)\)\s*$", re.S)
from .install import paths, rollback


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
    def __init__(self, command=None, timeout=60.0, deserialize=True):
        self.command = shlex.split(command) if isinstance(command, str) else command
        self.timeout, self.deserialize = timeout, deserialize

    def check(self, out, model):
        engine, manifest_path = paths(out, model)
        checks = []
        if self.deserialize:
            checks.append(_timed("deserialize", lambda: _deserialize(engine, manifest_path)))
        if self.command and all(c["ok"] for c in checks):
            checks.append(_timed("command", lambda: self._run(engine, model)))
        failed = [c for c in checks if not c["ok"]]
        reason = "{}: {}".format(failed[0]["name"], failed[0]["detail"]) if failed else ""
        return {"ok": not failed, "reason": reason, "checks": checks}

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


def _timed(name, check):
    started = time.time()
    ok, detail = check()
    return {"name": name, "ok": ok, "detail": detail, "seconds": round(time.time() - started, 3)}


def _deserialize(engine, manifest_path):
    try:
        manifest = read_json(manifest_path)
    except (IOError, OSError, ValueError):
        manifest = {}
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
    loaded = runtime.deserialize_cuda_engine(data)
    if loaded is None:
        said = _TRT_ERROR.sub(r"\1", errors[-1]) if errors else ""
        return False, "TensorRT {} cannot load it{}".format(getattr(trt, "__version__", "?"),
                                                            ": " + said[:300] if said else "")
    return True, "loaded by TensorRT {}".format(getattr(trt, "__version__", "?"))
