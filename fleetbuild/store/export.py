"""A release as a Triton model repository: DIR/MODEL/config.pbtxt and DIR/MODEL/1/model_<CC>.plan,
one engine per compute capability (chosen by precision preference), named in cc_model_filenames.

Nothing is trusted before it is checked: the index's signature first (an unsigned release only when
the caller allows it), then every engine and plugin library's sha256 as it is copied. Everything is
written into a directory beside DIR and moved into place model by model only when the whole release
checked out, so a failed or interrupted export leaves DIR as it was.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from fleetbuild.errors import EnvironmentProblem, UsageError
from fleetbuild.store.api import NotFound
from fleetbuild.store.blobs import blob_key, sha256_of_file


@dataclass
class Exported:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)    # model, CC, job, file
    notes: str | None = None                                               # the plugin notes file, if any


def checked_index(store: Any, project: str, version: str, public_key: str | None, allow_unsigned: bool) -> dict:
    """The release index, its signature checked with `public_key` (UsageError when there is none,
    unless `allow_unsigned`; EnvironmentProblem when it does not check out)."""
    from fleetbuild.remote.release import ReleaseError, check_index, signature_key

    prefix = f"releases/{project}/{version}"
    try:
        data = store.read_bytes(f"{prefix}/index.json")[0]
    except NotFound:
        raise UsageError(f"release {project} {version} is not in the store {store.url}") from None
    if public_key is None:
        if not allow_unsigned:
            raise UsageError(f"no public key to check release {project} {version} with: pass --public-key "
                             "fleetbuild.pub (or --allow-unsigned to export a release nobody signed)")
        try:
            return json.loads(data)
        except ValueError as err:
            raise EnvironmentProblem(f"{store.url}: {prefix}/index.json is not JSON ({err}): not exported") from None
    try:
        signature = store.read_bytes(signature_key(data, prefix))[0].decode("utf-8", "replace")
    except NotFound:
        raise EnvironmentProblem(f"release {project} {version} has no signature for its index (unsigned, or the "
                                 "index was changed after it was signed): not exported") from None
    try:
        return check_index(data, signature, public_key, project, version)
    except ReleaseError as err:
        raise EnvironmentProblem(f"release {project} {version} refused: {err}: not exported") from None


def choose(index: Mapping[str, Any], order: Sequence[str]) -> dict[str, dict[str, tuple[str, dict]]]:
    """model -> CC -> (job id, entry): per compute capability, the engine of the preferred precision."""
    chosen: dict[str, dict[str, tuple[str, dict]]] = {}
    for job_id, entry in sorted(index["entries"].items()):
        model, precision = job_id.split("/")[0], (entry.get("precision") or "fp32")
        if precision not in order:
            continue
        best = chosen.setdefault(model, {}).get(entry["compute_capability"])
        if best is None or order.index(precision) < order.index(best[1].get("precision") or "fp32"):
            chosen[model][entry["compute_capability"]] = (job_id, entry)
    return chosen


def _copy_checked(store: Any, sha256: str, dest: Path, what: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        store.download_file(blob_key(sha256), dest)
    except NotFound:
        raise EnvironmentProblem(f"{what} is missing from the store {store.url}: nothing exported") from None
    if sha256_of_file(dest) != sha256:
        raise EnvironmentProblem(f"{what} is corrupted in the store (its sha256 is not the release's): nothing "
                                 "exported (rebuild and republish it)")


def export_triton(store: Any, index: Mapping[str, Any], order: Sequence[str], out: Path,
                  arch_of_target: Mapping[str, str]) -> Exported:
    """Write the release into `out` (see the module docstring); `arch_of_target` splits the plugin
    notes per CPU arch."""
    from fleetbuild.remote.triton import config_pbtxt, write_plugin_notes

    chosen = choose(index, order)
    staging = out.parent / f".{out.name}.export-{os.getpid()}"
    done = Exported()
    arch_of: dict[str, str] = {}
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
        except OSError as err:
            raise EnvironmentProblem(f"--out {out}: cannot write: {err.strerror or err}") from None
        for model, per_cc in sorted(chosen.items()):
            files, io = {}, None
            for cc, (job_id, entry) in sorted(per_cc.items()):
                name = f"model_{cc.replace('.', '_')}.plan"
                _copy_checked(store, entry["engine"]["sha256"], staging / model / "1" / name, f"the engine of {job_id}")
                files[cc] = name
                for plugin in entry.get("plugins") or []:      # beside the model, by content: see the notes file
                    if not plugin.get("sha256"):
                        continue
                    relative = Path("plugins") / plugin["sha256"][:16] / Path(plugin["name"]).name
                    if not (staging / model / relative).exists():
                        _copy_checked(store, plugin["sha256"], staging / model / relative,
                                      f"plugin library {plugin['name']} of {job_id}")
                    if entry.get("target") in arch_of_target:
                        arch_of[str((out / model / relative).resolve())] = arch_of_target[entry["target"]]
                if io is None:
                    io = json.loads(store.read_bytes(entry["manifest"])[0]).get("io") or {}
                done.rows.append((model, cc, job_id, name))
            (staging / model / "config.pbtxt").write_text(
                config_pbtxt(model, io or {}, files, note=f"{index['project']} {index['version']}"), encoding="utf-8")
        for model in sorted(chosen):                   # every engine checked out: move the models in
            target, old = out / model, staging / f".old-{model}"
            if target.exists():
                target.rename(old)
            (staging / model).rename(target)
        done.notes = write_plugin_notes(str(out), arch_of)
    except OSError as err:
        raise EnvironmentProblem(f"--out {out}: cannot write: {err.strerror or err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done
