"""`fleetbuild-remote installed`: what is installed in an engine directory, plain engines and
Triton model directories alike (Python 3.6, standard library)."""
import errno
import json
import os

from . import install, triton
from .fsutil import read_json


def installed_row(model, manifest, previous_manifest, layout, **extra):
    """One row of `installed`: the engine's release, and the version of the one kept before it
    (read from `previous_manifest`, a path; None when there is none)."""
    release = manifest.get("release") or {}
    previous = None
    if previous_manifest is not None:
        try:
            previous = (read_json(previous_manifest).get("release") or {}).get("version")
        except (IOError, OSError, ValueError):
            pass
    row = {"model": model, "job_id": release.get("job_id"), "project": release.get("project"),
           "version": release.get("version"), "channel": release.get("channel"),
           "sequence": release.get("sequence"), "sha256": (manifest.get("engine") or {}).get("sha256"),
           "installed": release.get("installed"), "previous": previous, "layout": layout,
           "plugins": release.get("plugins") or []}
    row["health"] = _health(model, extra.pop("out_dir", None))
    row.update(extra)
    return row


def _health(model, out_dir):
    """The health gate's last verdict for `model` on this device (version, sha256, ok, reason), or None."""
    if out_dir is None:
        return None
    try:
        found = read_json(os.path.join(out_dir, model + ".health.json"))
    except (IOError, OSError, ValueError):
        return None
    if not isinstance(found, dict):
        return None
    return {key: found.get(key) for key in ("version", "sha256", "ok", "reason", "time")}


def installed(out_dir):
    """[{model, job_id, project, version, channel, sequence, sha256, installed, previous, layout,
    plugins, health}] in out_dir (health: the health gate's last verdict, plain layout) (Triton rows add triton_version, the repository version being served); a
    row whose manifest cannot be read has only model, layout and error. OSError when out_dir is not
    a directory."""
    if not os.path.isdir(out_dir):
        raise OSError(errno.ENOTDIR if os.path.exists(out_dir) else errno.ENOENT,
                      "not a directory" if os.path.exists(out_dir) else "no such directory", out_dir)
    rows = [_row(model, manifest, before, "plain", error, out_dir=out_dir)
            for model, manifest, before, error in install.entries(out_dir)]
    rows += [_row(model, manifest, before, "triton", error, triton_version=number)
             for model, manifest, before, number, error in triton.entries(out_dir)]
    return sorted(rows, key=lambda row: row["model"])


def _row(model, manifest, before, layout, error, **extra):
    if error is not None:
        return {"model": model, "layout": layout, "error": error}
    return installed_row(model, manifest, before if before and os.path.exists(before) else None, layout, **extra)


def dump(rows):
    return json.dumps(rows, indent=1, sort_keys=True)
