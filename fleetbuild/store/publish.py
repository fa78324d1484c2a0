"""Release indexes: releases/<project>/<version>/index.json, written last, with compare-and-swap.

Concurrent publishers of different jobs to one version merge (read, merge, write with If-Match /
If-None-Match, retry on conflict); different content for a job already in the version is refused
unless forced. Every manifest and blob an index names is checked to be in the store first, so a
reader that sees an index finds everything it names. The signature (minisign) is stored by the
index's sha256 under signatures/ before the index is written: a device reads the index, hashes it,
and fetches exactly the signature of those bytes, whoever won the race.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from typing import Any, Mapping

from fleetbuild.errors import UsageError
from fleetbuild.config.names import check_name, check_version
from fleetbuild.store.api import NotFound, PreconditionFailed, StoreError

INDEX_SCHEMA = 1
MAX_ATTEMPTS = 64


class PublishConflict(UsageError):
    pass


def release_prefix(project: str, version: str) -> str:
    return f"releases/{project}/{version}"


def entry_for(job: Any, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The index entry of one built job."""
    return {"target": job.target.name, "variant": job.job.variant, "precision": manifest.get("precision"),
            "compute_capability": manifest.get("compute_capability"), "tensorrt": manifest.get("tensorrt"),
            "build_key": manifest["build_key"], "manifest": f"builds/{manifest['build_key']}.json",
            "engine": manifest["engine"], "compat": manifest.get("compat") or {},
            "plugins": [{"provider": p["provider"], "name": p["name"], "sha256": p["sha256"], "size": p.get("size")}
                        for p in manifest.get("plugins") or []]}


def entry_blobs(entry: Mapping[str, Any]) -> list[tuple[str, int | None, str]]:
    """(sha256, size, what) of every blob an index entry needs: its engine, its plugin libraries
    (those installed on hosts, with no sha256, are not in the store) and its golden samples."""
    golden = entry.get("golden") or {}
    return [(entry["engine"]["sha256"], entry["engine"].get("size"), "engine")] + [
        (p["sha256"], p.get("size"), f"plugin library {p['name']}") for p in entry.get("plugins") or [] if p.get("sha256")] + [
        (a["sha256"], a.get("size"), f"golden {side[:-1]} {name}") for side in ("inputs", "outputs")
        for name, a in sorted((golden.get(side) or {}).items())]


def publish(store: Any, project: str, version: str, entries: Mapping[str, Mapping[str, Any]], signer: Any = None,
            expires_days: float = 90, force: bool = False) -> dict[str, Any]:
    """Add `entries` (job id -> entry) to the release; returns the index as written."""
    check_name("project", project)
    check_version(version)
    for job_id, entry in entries.items():
        for key in [entry["manifest"]] + [f"blobs/sha256/{sha}" for sha, _, _ in entry_blobs(entry)]:
            if not store.exists(key):
                raise StoreError(f"{store.url}: {key} is missing: {job_id} cannot be published")
    key = f"{release_prefix(project, version)}/index.json"
    for attempt in range(MAX_ATTEMPTS):
        try:
            data, etag = store.read_bytes(key)
            current = json.loads(data)
        except NotFound:
            current, etag = None, None
        merged = dict(current["entries"]) if current else {}
        conflicts = sorted(j for j, e in entries.items() if j in merged and merged[j] != dict(e))
        if conflicts and not force:
            raise PublishConflict(f"release {project} {version} already has {conflicts[0]} with other content"
                                  + (f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else "")
                                  + "; publish a new version, or use --force")
        if current is not None and all(merged.get(j) == dict(e) for j, e in entries.items()):
            return current                                         # nothing new: idempotent
        merged.update({j: dict(e) for j, e in entries.items()})
        now = time.time()
        index = {"schema": INDEX_SCHEMA, "project": project, "version": version,
                 "sequence": (current["sequence"] + 1) if current else 1, "created": round(now, 3),
                 "expires": round(now + expires_days * 86400, 3), "entries": merged}
        body = (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()
        if signer is not None:
            digest = hashlib.sha256(body).hexdigest()
            comment = (f"fleetbuild release {project} {version} sequence {index['sequence']} "
                       f"expires {int(index['expires'])} sha256 {digest}")
            store.write_bytes(f"{release_prefix(project, version)}/signatures/{digest}.minisig",
                              signer.sign(body, comment).encode())
        try:
            if current is None:
                store.write_bytes(key, body, if_none_match=True)
            else:
                store.write_bytes(key, body, if_match=etag)
            return index
        except PreconditionFailed:
            time.sleep(random.uniform(0, 0.02 * min(attempt + 1, 10)))
    raise StoreError(f"{store.url}: {key}: gave up after {MAX_ATTEMPTS} concurrent updates")


def channel_version(store: Any, project: str, channel: str) -> str | None:
    """The version releases/<project>/channels/<channel>.json points to, None when there is none (or
    it is unreadable). The controller reads its own store; devices check the signature."""
    try:
        return json.loads(store.read_bytes(f"releases/{project}/channels/{channel}.json")[0])["version"]
    except (NotFound, ValueError, KeyError, TypeError):
        return None


def set_channel(store: Any, project: str, channel: str, index: Mapping[str, Any], signer: Any = None) -> None:
    """releases/<project>/channels/<name>.json -> the version (last writer wins)."""
    check_name("channel", channel)
    check_name("project", project)
    body = (json.dumps({"project": project, "channel": channel, "version": index["version"],
                        "sequence": index["sequence"], "updated": round(time.time(), 3)}, indent=1,
                       sort_keys=True) + "\n").encode()
    if signer is not None:
        digest = hashlib.sha256(body).hexdigest()
        store.write_bytes(f"releases/{project}/channels/signatures/{digest}.minisig",
                          signer.sign(body, f"fleetbuild channel {project} {channel} {index['version']}").encode())
    store.write_bytes(f"releases/{project}/channels/{channel}.json", body)
