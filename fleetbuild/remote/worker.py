"""`fleetbuild-remote build --spec spec.json --out DIR`: build one engine.

While it runs: DIR/status.json (phase, elapsed; refreshed every few seconds). Then, each written
to a temp file and renamed: the engine, build.log, manifest.json and, last, result.json. A
directory without result.json is not finished, whatever else it holds. Re-running the same spec
into the same DIR returns at once when the finished result is intact, and otherwise builds again.
"""
import hashlib
import json
import os
import signal
import sys
import threading
import time

from . import PROTOCOL_VERSION
from .buildkey import build_key, canonical_json
from .errors import EXIT_INTERNAL, EXIT_OK, Interrupted, SpecError, WorkerError
from .fsutil import is_disk_full, sha256_file, write_bytes_atomic, write_json_atomic

MANIFEST_SCHEMA = 1
HEARTBEAT_SECONDS = 2.0
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
REQUIRED = {"job_id": str, "backend": str, "precision": str, "onnx": str}
OPTIONAL = {"compute_capability": str, "inputs": dict, "options": dict, "calibration": list, "plugins": list,
            "timing_cache": str, "calibration_cache": str, "key_parts": dict, "engine_name": str, "host": dict}


def load_spec(path):
    """The spec with paths made absolute (relative ones are relative to the spec's folder)."""
    try:
        with open(path, "rb") as handle:
            spec = json.loads(handle.read().decode("utf-8"))
    except (IOError, OSError) as err:
        raise SpecError("cannot read spec {}: {}".format(path, err.strerror or err))
    except ValueError as err:
        raise SpecError("spec {} is not valid JSON: {}".format(path, err))
    if not isinstance(spec, dict):
        raise SpecError("spec {} must be a JSON object".format(path))
    if spec.get("schema") != PROTOCOL_VERSION:
        raise SpecError("spec schema {!r} is not supported by this worker (expected {})".format(
            spec.get("schema"), PROTOCOL_VERSION))
    for key, kind in list(REQUIRED.items()) + list(OPTIONAL.items()):
        if key in REQUIRED and key not in spec:
            raise SpecError("spec is missing {!r}".format(key))
        if key in spec and spec[key] is not None and not isinstance(spec[key], kind):
            raise SpecError("spec key {!r} must be a {}".format(key, kind.__name__))
    if spec["precision"] not in PRECISIONS:
        raise SpecError("spec precision {!r} is not one of {}".format(spec["precision"], ", ".join(PRECISIONS)))
    base = os.path.dirname(os.path.abspath(path))

    def resolve(value):
        return value if value is None or os.path.isabs(value) else os.path.join(base, value)

    spec["onnx"] = resolve(spec["onnx"])
    spec["calibration"] = [resolve(p) for p in spec.get("calibration") or []]
    plugins = []
    for entry in spec.get("plugins") or []:
        if not isinstance(entry, dict) or not all(k in entry for k in ("provider", "path", "ops", "registration")):
            raise SpecError("spec plugins must be tables with provider, path, ops and registration")
        plugins.append(dict(entry, path=resolve(entry["path"])))
    spec["plugins"] = plugins
    for key in ("timing_cache", "calibration_cache"):
        spec[key] = resolve(spec.get(key))
    engine = spec.get("engine_name") or "engine.plan"
    if os.path.basename(engine) != engine or engine.startswith("."):
        raise SpecError("engine_name must be a plain file name, got {!r}".format(engine))
    spec["engine_name"] = engine
    if not os.path.isfile(spec["onnx"]):
        raise SpecError("ONNX file not found: {}".format(spec["onnx"]))
    return spec


class Status(object):
    """DIR/status.json, rewritten at each phase and every HEARTBEAT_SECONDS while building."""

    def __init__(self, out_dir, job_id):
        self.path = os.path.join(out_dir, "status.json")
        self.job_id, self.started, self.phase = job_id, time.time(), "starting"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._beat, name="status-heartbeat")
        self.thread.daemon = True

    def set(self, phase):
        self.phase = phase
        self.write()

    def write(self):
        with self.lock:
            try:
                write_json_atomic(self.path, {"job_id": self.job_id, "phase": self.phase, "pid": os.getpid(),
                                              "pgid": os.getpgid(0), "started": self.started,
                                              "elapsed": round(time.time() - self.started, 2),
                                              "updated": time.time()})
            except OSError:
                pass  # a full disk shows up where it matters: writing the engine

    def _beat(self):
        while not self.stop.wait(HEARTBEAT_SECONDS):
            self.write()

    def __enter__(self):
        self.write()
        self.thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop.set()
        self.thread.join()
        self.phase = "failed" if exc_type else "done"
        self.write()


def spec_digest(spec):
    return hashlib.sha256(canonical_json(spec)).hexdigest()


def already_built(out_dir, digest):
    """True when DIR holds a finished, intact result of this very spec."""
    try:
        result = json.load(open(os.path.join(out_dir, "result.json")))
        engine = result["engine"]
        return (result.get("status") == "ok" and result.get("spec_sha256") == digest and
                sha256_file(os.path.join(out_dir, engine["file"])) == engine["sha256"])
    except (IOError, OSError, ValueError, KeyError, TypeError):
        return False


def clear_previous(out_dir, engine_name):
    for name in ("result.json", "manifest.json", "build.log", engine_name):
        try:
            os.unlink(os.path.join(out_dir, name))
        except OSError:
            pass
    for name in os.listdir(out_dir):
        if name.startswith(".tmp-"):
            try:
                os.unlink(os.path.join(out_dir, name))
            except OSError:
                pass


def _raise_interrupted(signum, frame):
    raise Interrupted("interrupted by signal {}".format(signum))


def run(spec_path, out_dir, debug=False, env=None):
    """Build one engine; returns the exit code. Never raises for expected failures."""
    started = time.time()
    log_lines = []
    try:
        if not os.path.isdir(out_dir):
            os.makedirs(out_dir)
        probe_write = os.path.join(out_dir, ".tmp-write-check")
        with open(probe_write, "wb"):
            pass
        os.unlink(probe_write)
    except OSError as err:
        sys.stderr.write("fleetbuild-remote: environment: cannot write to output directory {}: {}\n".format(
            out_dir, err.strerror or err))
        return WorkerError.exit_code

    spec, digest, job_id = None, None, "?"
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        spec = load_spec(spec_path)
        job_id = spec["job_id"]
        digest = spec_digest(spec)
        if already_built(out_dir, digest):
            sys.stdout.write("{}: already built in {}\n".format(job_id, out_dir))
            return EXIT_OK
        clear_previous(out_dir, spec["engine_name"])
        with Status(out_dir, job_id) as status:
            result = _build(spec, out_dir, status, log_lines, env)
        result.update(status="ok", job_id=job_id, spec_sha256=digest, seconds=round(time.time() - started, 3),
                      exit_code=EXIT_OK, kind=None, reason=None)
        write_json_atomic(os.path.join(out_dir, "result.json"), result)
        sys.stdout.write("{}: built {} ({} bytes) in {:.2f} s\n".format(
            job_id, result["engine"]["file"], result["engine"]["size"], result["seconds"]))
        return EXIT_OK
    except KeyboardInterrupt:
        return _fail(out_dir, Interrupted("interrupted"), job_id, digest, started, log_lines, debug)
    except WorkerError as err:
        return _fail(out_dir, err, job_id, digest, started, log_lines, debug)
    except MemoryError:
        return _fail(out_dir, WorkerError("out of memory"), job_id, digest, started, log_lines, debug)
    except (IOError, OSError) as err:
        reason = "disk full" if is_disk_full(err) else (err.strerror or str(err))
        where = " ({})".format(err.filename) if getattr(err, "filename", None) else ""
        return _fail(out_dir, WorkerError("{}{}".format(reason, where)), job_id, digest, started, log_lines, debug)
    except Exception as err:
        import traceback

        failure = WorkerError("internal error: {}: {}".format(type(err).__name__, err),
                              traceback.format_exc().splitlines() if debug else ())
        failure.kind, failure.exit_code = "internal", EXIT_INTERNAL
        return _fail(out_dir, failure, job_id, digest, started, log_lines, debug)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _build(spec, out_dir, status, log_lines, env):
    from . import backends

    backend = backends.load(spec["backend"])
    for note in spec.get("notes") or ():      # what the controller did to the model (renamed dims, fp16 clamps)
        log_lines.append("[fleetbuild] " + note)
    status.set("building")
    output = backend.build(spec, log_lines.append)
    status.set("writing")
    engine_name = spec["engine_name"]
    engine_path = os.path.join(out_dir, engine_name)
    write_bytes_atomic(engine_path, output["plan"])
    engine = {"file": engine_name, "sha256": hashlib.sha256(output["plan"]).hexdigest(), "size": len(output["plan"])}
    write_bytes_atomic(os.path.join(out_dir, "build.log"), ("\n".join(log_lines) + "\n").encode("utf-8"))
    host = spec.get("host") or _light_probe(env)
    tensorrt = {"flavor": output["flavor"], "version": output["version"],
                "compute_capability": output["compute_capability"]}
    options = spec.get("options") or {}
    manifest = {
        "schema": MANIFEST_SCHEMA, "job_id": spec["job_id"],
        "build_key": build_key(spec.get("key_parts") or {}, tensorrt),
        "engine": engine, "builder": host, "tensorrt": {"flavor": output["flavor"], "version": output["version"]},
        "compute_capability": output["compute_capability"], "precision": spec["precision"],
        "io": output["io"], "build_seconds": round(output["builder_seconds"], 3),
        "warnings": output["warnings"], "flags": output["flags"],
        "compat": {"version_compatible": bool(options.get("version_compatible")),
                   "hardware_compatibility_level": options.get("hardware_compatibility_level") or "none",
                   "exclude_lean_runtime": bool(options.get("exclude_lean_runtime"))},
        "plugins": [dict({k: p[k] for k in ("provider", "name", "sha256", "registration", "creators")},
                         size=os.path.getsize(p["path"])) for p in output.get("plugins") or []],
        "options": options, "created": time.time(),
        "model_rewrites": spec.get("rewrites") or [], "notes": spec.get("notes") or [],
    }
    write_json_atomic(os.path.join(out_dir, "manifest.json"), manifest)
    return {"schema": PROTOCOL_VERSION, "engine": engine, "build_key": manifest["build_key"],
            "warnings": len(manifest["warnings"])}


def _light_probe(env):
    from .probe import Probe

    return Probe(env=env).collect_light()


def _fail(out_dir, err, job_id, digest, started, log_lines, debug):
    details = [line for line in err.details if line][-20:]
    result = {"schema": PROTOCOL_VERSION, "status": "failed", "kind": err.kind, "reason": err.message,
              "details": details, "job_id": job_id, "spec_sha256": digest,
              "seconds": round(time.time() - started, 3), "exit_code": err.exit_code}
    try:
        write_bytes_atomic(os.path.join(out_dir, "build.log"), ("\n".join(log_lines) + "\n").encode("utf-8"))
        write_json_atomic(os.path.join(out_dir, "result.json"), result)
    except OSError:
        pass  # e.g. the disk is full: stderr and the exit code still say what happened
    sys.stderr.write("fleetbuild-remote: {}: {}: {}\n".format(err.kind, job_id, err.message))
    if debug:
        for line in details:
            sys.stderr.write("  {}\n".format(line))
    return err.exit_code
