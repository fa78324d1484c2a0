"""`fleetbuild-remote pull`: a device fetches the engine that matches it from a published release.

The store is a directory (a mount or mirror of a file:// store) or an HTTP(S) base URL under which
the store's keys are readable (a public or proxied bucket). The index must be signed by the fleet's
key, be the project/version asked for, unexpired, and not older than the last one this device
accepted. The entry is chosen by this device's compute capability and installed TensorRT version;
the engine's sha256 is checked before it is installed (temp file + rename, manifest beside it).
"""
import errno
import hashlib
import json
import os
import time

from .fsutil import read_json, write_bytes_atomic, write_json_atomic
from .release import ReleaseError, check_index, signature_key

STATE = ".fleetbuild-release.json"


class PullError(Exception):
    pass


class Missing(PullError):
    """The store answered, and has no such object (HTTP 404, no such file)."""


def fetch(store, key):
    if store.startswith(("http://", "https://")):
        from urllib.error import HTTPError, URLError
        from urllib.request import urlopen

        try:
            with urlopen(store.rstrip("/") + "/" + key, timeout=60) as response:
                return response.read()
        except HTTPError as err:
            kind = Missing if err.code in (403, 404) else PullError     # S3 answers 403 for a missing key
            raise kind("{}: HTTP {} for {}".format(store, err.code, key))
        except URLError as err:
            raise PullError("{}: cannot reach the store ({})".format(store, err.reason))
    try:
        with open(os.path.join(store, key), "rb") as handle:
            return handle.read()
    except (IOError, OSError) as err:
        if not os.path.isdir(store):
            raise PullError("the store {} does not exist (check --store)".format(store))
        if getattr(err, "errno", None) == errno.ENOENT:
            raise Missing("{}: {}: not found".format(store, key))
        raise PullError("{}: {}: {}".format(store, key, err.strerror or err))


def device_match(facts):
    """(compute capabilities, {flavor: version}) of this device, from the probe."""
    ccs = set(g.get("compute_capability") for g in facts.get("gpus") or [] if g.get("compute_capability"))
    versions = dict((i["flavor"], i["version"]) for i in facts.get("tensorrt") or [])
    return ccs, versions


def choose(index, model, precision, facts):
    ccs, versions = device_match(facts)
    found = []
    for job_id, entry in sorted(index["entries"].items()):
        parts = job_id.split("/")
        if parts[0] != model or (precision and parts[2].split("+")[0] != precision):
            continue
        trt = entry.get("tensorrt") or {}
        if entry.get("compute_capability") in ccs and versions.get(trt.get("flavor")) == trt.get("version"):
            found.append((job_id, entry))
    if not found:
        raise PullError("no engine of {} in {} {} matches this device (CC {}, TensorRT {})".format(
            model, index["project"], index["version"], ", ".join(sorted(ccs)) or "unknown",
            ", ".join("{} {}".format(k, v) for k, v in sorted(versions.items())) or "none"))
    if len(found) > 1:
        raise PullError("{} engines match ({}): choose one with --precision".format(
            len(found), ", ".join(job for job, _ in found)))
    return found[0]


def _published(store, project):
    """'; published: 0.1.0, 0.2.0' for a directory store (an HTTP store cannot be listed)."""
    folder = os.path.join(store, "releases", project)
    if store.startswith(("http://", "https://")) or not os.path.isdir(folder):
        return ""
    versions = sorted(v for v in os.listdir(folder) if os.path.isfile(os.path.join(folder, v, "index.json")))
    return "; published: " + (", ".join(versions) if versions else "none")


def pull(store, project, version, model, public_key_text, out_dir, precision=None, facts=None):
    """Install the matching engine as OUT/<model>.plan (+ .manifest.json); returns the job id."""
    from .probe import Probe

    prefix = "releases/{}/{}".format(project, version)
    try:
        index_bytes = fetch(store, prefix + "/index.json")
    except Missing:
        raise PullError("release {} {} is not in the store {}{}".format(project, version, store,
                                                                        _published(store, project)))
    state_path = os.path.join(out_dir, STATE)
    try:
        state = read_json(state_path)
    except (IOError, OSError, ValueError):
        state = {}
    seen = state.get("{}/{}".format(project, version), 0)
    try:
        try:
            signature = fetch(store, signature_key(index_bytes, prefix)).decode("utf-8")
        except Missing:
            raise PullError("it is unsigned (the store has no signature for this index): publish it with a "
                            "signing key")
        index = check_index(index_bytes, signature, public_key_text, project, version, min_sequence=seen)
    except (ReleaseError, PullError) as err:
        raise PullError("release {} {} refused: {}".format(project, version, err))
    job_id, entry = choose(index, model, precision, facts if facts is not None else Probe().collect())
    engine = fetch(store, "blobs/sha256/" + entry["engine"]["sha256"])
    digest = hashlib.sha256(engine).hexdigest()
    if digest != entry["engine"]["sha256"]:
        raise PullError("engine of {} is corrupted in the store (sha256 {}, the release says {}): nothing "
                        "installed".format(job_id, digest[:16], entry["engine"]["sha256"][:16]))
    manifest = json.loads(fetch(store, entry["manifest"]).decode("utf-8"))
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    write_bytes_atomic(os.path.join(out_dir, model + ".plan"), engine)
    write_json_atomic(os.path.join(out_dir, model + ".manifest.json"), dict(manifest, release={
        "project": project, "version": version, "sequence": index["sequence"], "job_id": job_id,
        "installed": time.time()}))
    state["{}/{}".format(project, version)] = index["sequence"]
    write_json_atomic(state_path, state)
    return job_id
