"""`fleetbuild-remote pull`: a device fetches the engine that fits it from a published release.

The store is a directory (a mount or mirror of a file:// store) or an HTTP(S) base URL under which
the store's keys are readable (a public or proxied bucket; presigned URLs for private ones come in
a --urls file). The index (and a channel file, for --channel) must be signed by the fleet's key, be
the project/version asked for, unexpired, and not older than the last one this device accepted.
The entry is chosen by choose.py (flavor, TensorRT version or version compatibility, compute
capability or hardware compatibility, then the precision preference), streamed to a .part file
(resumed after an interruption), checked against its sha256, and installed atomically with the
previous engine kept (install.py).
"""
import hashlib
import json
import os
import time

from .choose import NoMatch, choose
from .download import Corrupted, DownloadError, NotThere, download
from .fsutil import read_json, write_json_atomic
from .install import current, install
from .names import check_name, check_version
from .release import ReleaseError, check_index, signature_key
from .transport import Missing, PullError, fetch_if_changed
from .verify import SignatureError, verify_minisig

STATE = ".fleetbuild-release.json"


class Pulled(object):
    def __init__(self, job_id, status, version, reasons, transferred=0, entry=None):
        self.job_id, self.status, self.version = job_id, status, version     # installed | unchanged | would install
        self.reasons, self.transferred, self.entry = reasons, transferred, entry


def fetch(store, key, urls=None):
    """A small object (index, signature, manifest) in memory."""
    return fetch_if_changed(store, key, None, urls)[0]


def _published(store, project):
    """'; published: 0.1.0, 0.2.0' for a directory store (an HTTP store cannot be listed)."""
    folder = os.path.join(store, "releases", project)
    if store.startswith(("http://", "https://")) or not os.path.isdir(folder):
        return ""
    versions = sorted(v for v in os.listdir(folder) if os.path.isfile(os.path.join(folder, v, "index.json")))
    return "; published: " + (", ".join(v for v in versions if v != "channels") if versions else "none")


def channel_version(store, project, channel, public_key_text, urls=None):
    """The version a signed channel file points to."""
    key = "releases/{}/channels/{}.json".format(project, channel)
    try:
        body = fetch(store, key, urls)
    except Missing:
        raise PullError("channel {} of {} is not in the store {}".format(channel, project, store))
    sig_key = "releases/{}/channels/signatures/{}.minisig".format(project, hashlib.sha256(body).hexdigest())
    try:
        verify_minisig(body, fetch(store, sig_key, urls).decode("utf-8"), public_key_text)
    except Missing:
        raise PullError("channel {} of {} is unsigned: publish it with a signing key".format(channel, project))
    except SignatureError as err:
        raise PullError("channel {} of {} refused: {}".format(channel, project, err))
    document = json.loads(body.decode("utf-8"))
    if document.get("project") != project or document.get("channel") != channel:
        raise PullError("channel file {} names {} {}".format(key, document.get("project"), document.get("channel")))
    return document["version"]


def read_release(store, project, version, public_key_text, out_dir, urls=None):
    """The checked index of project/version (signature, project/version, expiry, no replay)."""
    prefix = "releases/{}/{}".format(project, version)
    try:
        index_bytes = fetch(store, prefix + "/index.json", urls)
    except Missing:
        raise PullError("release {} {} is not in the store {}{}".format(project, version, store,
                                                                        _published(store, project)))
    try:
        state = read_json(os.path.join(out_dir, STATE))
    except (IOError, OSError, ValueError):
        state = {}
    seen = state.get("{}/{}".format(project, version), 0)
    try:
        try:
            signature = fetch(store, signature_key(index_bytes, prefix), urls).decode("utf-8")
        except Missing:
            raise PullError("it is unsigned (the store has no signature for this index): publish it with a "
                            "signing key")
        return check_index(index_bytes, signature, public_key_text, project, version, min_sequence=seen)
    except (ReleaseError, PullError) as err:
        raise PullError("release {} {} refused: {}".format(project, version, err))


def pull(store, project, version, model, public_key_text, out_dir, precision=None, facts=None, channel=None,
         dry_run=False, urls=None, layout="plain", mirror=False, golden=False):
    """Install the engine of `model` that fits this device as OUT/<model>.plan (layout "triton":
    OUT/<model>/<n>/model.plan + config.pbtxt); a Pulled record. `precision`: a preference
    ("fp16" or "int8,fp16"); `facts`: a probe's JSON instead of probing; `mirror`: see download();
    `golden`: also fetch the entry's golden samples (for the health gate) under OUT/.golden/."""
    from . import triton

    check_name("project", project)
    check_name("model", model)
    if channel:
        version = channel_version(store, project, check_name("channel", channel), public_key_text, urls)
    check_version(version)
    index = read_release(store, project, version, public_key_text, out_dir, urls)
    preference = [p.strip() for p in precision.split(",") if p.strip()] if precision else None
    try:
        if facts is None:
            from .probe import Probe        # a deploy's pull brings the facts it was chosen with

            facts = Probe().collect()
        job_id, entry, reasons = choose(index, model, facts, preference)
    except NoMatch as err:
        raise PullError(str(err), err.reasons)
    if dry_run:
        return Pulled(job_id, "would install", version, reasons, entry=entry)
    installed_now = (triton.current(out_dir, model) if layout == "triton" else current(out_dir, model)) or {}
    if (installed_now.get("engine") or {}).get("sha256") == entry["engine"]["sha256"]:
        _remember(out_dir, project, version, index["sequence"])
        return Pulled(job_id, "unchanged", version, reasons, entry=entry)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    manifest = json.loads(fetch(store, entry["manifest"], urls).decode("utf-8"))
    plugins = fetch_plugins(store, entry, os.path.join(out_dir, model) if layout == "triton" else out_dir, urls,
                            mirror)
    samples = fetch_golden(store, entry, out_dir, urls, mirror) if golden and entry.get("golden") else None
    target = os.path.join(out_dir, ".{}.plan.download".format(model))
    blob = "blobs/sha256/" + entry["engine"]["sha256"]
    try:
        transferred = download(store, blob, target, entry["engine"]["sha256"], entry["engine"].get("size"),
                               url=(urls or {}).get(blob), mirror=mirror)
    except NotThere:
        raise PullError("the engine of {} is missing from the store: nothing installed".format(job_id))
    except Corrupted as err:
        raise PullError("engine of {} is corrupted in the store ({}): nothing installed".format(job_id, err))
    except DownloadError as err:
        raise PullError("{}: nothing installed, the previous engine is still in place".format(err))
    (triton.install if layout == "triton" else install)(out_dir, model, target, dict(manifest, release={
        "project": project, "version": version, "channel": channel, "sequence": index["sequence"],
        "job_id": job_id, "installed": time.time(), "plugins": plugins, "golden": samples}))
    if samples is not None or os.path.isdir(os.path.join(out_dir, GOLDEN)):
        prune_golden(out_dir)
    if layout == "triton":
        triton.write_plugin_notes(out_dir)
    _remember(out_dir, project, version, index["sequence"])
    return Pulled(job_id, "installed", version, reasons, transferred, entry)


def fetch_plugins(store, entry, directory, urls=None, mirror=False):
    """Download the plugin libraries an engine needs to DIRECTORY/plugins/<sha256[:16]>/<name>
    (content-addressed: an engine's libraries never change under it), each checked like the
    engine; the installed paths. Libraries installed on the hosts (no sha256) must already be on
    the device."""
    paths = []
    for plugin in entry.get("plugins") or []:
        if not plugin.get("sha256"):
            continue
        name = os.path.basename(str(plugin.get("name") or ""))
        if name in ("", ".", ".."):
            raise PullError("the release names a plugin library {!r}, which is not a file name: nothing "
                            "installed".format(plugin.get("name")))
        folder = os.path.join(directory, "plugins", plugin["sha256"][:16])
        dest = os.path.join(folder, name)
        paths.append(dest)
        if os.path.exists(dest):
            continue
        if not os.path.isdir(folder):
            os.makedirs(folder)
        blob = "blobs/sha256/" + plugin["sha256"]
        try:
            download(store, blob, dest, plugin["sha256"], plugin.get("size"), url=(urls or {}).get(blob), mirror=mirror)
        except NotThere:
            raise PullError("plugin library {} is missing from the store: nothing installed".format(name))
        except Corrupted as err:
            raise PullError("plugin library {} is corrupted in the store ({}): nothing installed".format(name, err))
        except DownloadError as err:
            raise PullError("{}: nothing installed, the previous engine is still in place".format(err))
    return paths


GOLDEN = ".golden"


def fetch_golden(store, entry, out_dir, urls=None, mirror=False):
    """The entry's golden samples in OUT/.golden/<sha256>.npy, each checked against the signed index's
    hash: {"inputs": {name: path}, "outputs": {name: path}, "cosine": threshold}."""
    folder = os.path.join(out_dir, GOLDEN)
    if not os.path.isdir(folder):
        os.makedirs(folder)
    found = {"cosine": entry["golden"].get("cosine")}
    for side in ("inputs", "outputs"):
        found[side] = {}
        for name, blob in sorted((entry["golden"].get(side) or {}).items()):
            digest = str(blob.get("sha256") or "")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise PullError("golden sample {} has no valid sha256 in the index: nothing installed".format(name))
            dest = os.path.join(folder, digest + ".npy")
            if not os.path.exists(dest):
                key = "blobs/sha256/" + blob["sha256"]
                try:
                    download(store, key, dest, blob["sha256"], blob.get("size"), url=(urls or {}).get(key),
                             mirror=mirror)
                except (NotThere, Corrupted, DownloadError) as err:
                    raise PullError("golden sample {} of {}: {}: nothing installed".format(name, entry.get("target"), err))
            found[side][name] = dest
    return found


def prune_golden(out_dir):
    """Drop golden samples no installed or previous engine's manifest names any more."""
    from .install import entries

    keep = set()
    for model, manifest, previous, _ in entries(out_dir):
        for document in (manifest, _read_or_none(previous)):
            golden = ((document or {}).get("release") or {}).get("golden") or {}
            keep.update(os.path.basename(p) for side in ("inputs", "outputs") for p in (golden.get(side) or {}).values())
    folder = os.path.join(out_dir, GOLDEN)
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if name not in keep:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def _read_or_none(path):
    try:
        return read_json(path)
    except (IOError, OSError, ValueError):
        return None


def _remember(out_dir, project, version, sequence):
    """The newest index sequence accepted per release: an older one is refused later (replay)."""
    path = os.path.join(out_dir, STATE)
    try:
        state = read_json(path)
    except (IOError, OSError, ValueError):
        state = {}
    state["{}/{}".format(project, version)] = max(sequence, state.get("{}/{}".format(project, version), 0))
    if os.path.isdir(out_dir):
        write_json_atomic(path, state)
