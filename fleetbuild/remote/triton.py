"""Triton Inference Server layout (Python 3.6, standard library): a model repository entry
MODEL/config.pbtxt (platform "tensorrt_plan", inputs and outputs from the engine's manifest) and
MODEL/<version>/model.plan. `config_pbtxt` also writes `cc_model_filenames` when one repository
serves GPUs of several compute capabilities (`fleetbuild artifacts export --layout triton`).
"""
import json
import os
import shutil

from .names import check_name, inside

DATA_TYPES = {"float": "TYPE_FP32", "float32": "TYPE_FP32", "half": "TYPE_FP16", "float16": "TYPE_FP16",
              "bf16": "TYPE_BF16", "bfloat16": "TYPE_BF16", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8",
              "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "fp8": "TYPE_FP8"}


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tensors(kind, tensors):
    lines = ["{} [".format(kind)]
    for index, tensor in enumerate(tensors):
        data_type = DATA_TYPES.get(str(tensor.get("dtype", "")).lower())
        if data_type is None:
            raise ValueError("tensor {} has type {}, which Triton's TensorRT backend cannot serve".format(
                tensor.get("name"), tensor.get("dtype")))
        dims = ", ".join(str(d if isinstance(d, int) and d > 0 else -1) for d in tensor.get("shape") or [])
        lines.append("  {{\n    name: {}\n    data_type: {}\n    dims: [ {} ]\n  }}{}".format(
            _quote(tensor["name"]), data_type, dims, "," if index < len(tensors) - 1 else ""))
    lines.append("]")
    return "\n".join(lines)


def config_pbtxt(model, io, cc_files=None, note=""):
    """The config.pbtxt text of `model` (io: the manifest's {"inputs": [...], "outputs": [...]}).
    max_batch_size 0: the engine's profile already spans the batch dimension."""
    parts = ["# written by fleetbuild{}".format(": " + note if note else ""),
             "name: {}".format(_quote(model)), 'platform: "tensorrt_plan"', "max_batch_size: 0",
             _tensors("input", io.get("inputs") or []), _tensors("output", io.get("outputs") or []),
             "version_policy: { latest: { num_versions: 1 } }"]
    if cc_files:
        parts.append("cc_model_filenames [\n" + ",\n".join(
            "  {{ key: {} value: {} }}".format(_quote(cc), _quote(name)) for cc, name in sorted(cc_files.items()))
            + "\n]")
    return "\n".join(parts) + "\n"


def versions(model_dir):
    return sorted(int(n) for n in os.listdir(model_dir) if n.isdigit()) if os.path.isdir(model_dir) else []


def model_dir_of(out_dir, model):
    """OUT/MODEL, for a valid model name that stays inside out_dir; else BadName."""
    return inside(out_dir, os.path.join(out_dir, check_name("model", model)))


def install(out_dir, model, engine_file, manifest):
    """MODEL/<n+1>/model.plan (+ fleetbuild.manifest.json) and config.pbtxt; the version before is
    kept for rollback, older ones removed. The new version directory appears with one rename."""
    model_dir = model_dir_of(out_dir, model)
    if not os.path.isdir(model_dir):
        os.makedirs(model_dir)
    existing = versions(model_dir)
    number = (existing[-1] + 1) if existing else 1
    staging = os.path.join(model_dir, ".{}.tmp-{}".format(number, os.getpid()))
    os.makedirs(staging)
    os.replace(engine_file, os.path.join(staging, "model.plan"))
    with open(os.path.join(staging, "fleetbuild.manifest.json"), "w") as handle:
        json.dump(manifest, handle, sort_keys=True)
    config = os.path.join(model_dir, "config.pbtxt")
    with open(config + ".tmp", "w") as handle:
        handle.write(config_pbtxt(model, manifest.get("io") or {}, note=(manifest.get("release") or {}).get("job_id", "")))
    os.replace(staging, os.path.join(model_dir, str(number)))
    os.replace(config + ".tmp", config)
    for old in existing[:-1]:
        shutil.rmtree(os.path.join(model_dir, str(old)), ignore_errors=True)


def current(out_dir, model):
    found = versions(model_dir_of(out_dir, model))
    if not found:
        return None
    try:
        with open(os.path.join(out_dir, model, str(found[-1]), "fleetbuild.manifest.json")) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def rollback(out_dir, model):
    """Remove the newest version: Triton serves the one before it again."""
    model_dir = model_dir_of(out_dir, model)
    found = versions(model_dir)
    if len(found) < 2:
        raise ValueError("no previous version of {} in {} to roll back to".format(model, model_dir))
    shutil.rmtree(os.path.join(model_dir, str(found[-1])))
    return current(out_dir, model)


def entries(out_dir):
    """(model, manifest or None, path of the previous version's manifest or None, repository version
    being served, error or None) for each Triton model directory in out_dir."""
    found = []
    for model in sorted(os.listdir(out_dir)):
        numbers = versions(os.path.join(out_dir, model))
        if not numbers:
            continue
        path = os.path.join(out_dir, model, str(numbers[-1]), "fleetbuild.manifest.json")
        manifest, error = None, None
        try:
            with open(path) as handle:
                manifest = json.load(handle)
            if not isinstance(manifest, dict):
                manifest, error = None, "{}: not a manifest".format(path)
        except (IOError, OSError, ValueError) as err:
            error = "{}: unreadable: {}".format(path, getattr(err, "strerror", None) or err)
        before = (os.path.join(out_dir, model, str(numbers[-2]), "fleetbuild.manifest.json")
                  if len(numbers) > 1 else None)
        found.append((model, manifest, before, numbers[-1], error))
    return found


PLUGIN_NOTES = "fleetbuild-plugins.txt"


def write_plugin_notes(out_dir, arch_of=None):
    """OUT/fleetbuild-plugins.txt: the plugin libraries the repository's engines need and how to
    give them to Triton's TensorRT backend (a file at the repository root is not a model).
    `arch_of` ({library path: CPU arch}) splits the list per arch: a server loads its own only."""
    found = []
    for model in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []:
        base = os.path.join(out_dir, model, "plugins")
        for digest in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            for name in sorted(os.listdir(os.path.join(base, digest))):
                found.append(os.path.join(os.path.abspath(base), digest, name))
    path = os.path.join(out_dir, PLUGIN_NOTES)
    if not found:
        if os.path.exists(path):
            os.unlink(path)
        return None
    groups = {}
    for library in found:
        groups.setdefault((arch_of or {}).get(library, ""), []).append(library)
    text = "# Plugin libraries the TensorRT engines in this repository need (written by fleetbuild).\n"
    for arch in sorted(groups):
        libraries = groups[arch]
        text += ("#\n# {}Give them to Triton's TensorRT backend before it loads a model:\n"
                 "#   tritonserver --model-repository={repo} --backend-config=tensorrt,plugins=\"{joined}\"\n"
                 "# or preload them into the server process:\n"
                 "#   LD_PRELOAD={colon} tritonserver --model-repository={repo}\n"
                 "# (paths as on this machine; mount the repository at the same path in a container)\n"
                 ).format("On {} servers: ".format(arch) if arch else "", repo=os.path.abspath(out_dir),
                          joined=";".join(libraries), colon=":".join(libraries))
        text += "".join(line + "\n" for line in libraries)
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)
    return path
