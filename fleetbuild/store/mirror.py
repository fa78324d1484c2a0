"""A local copy of the few store objects a device reads: the channel file, a release index and
their signatures, then manifests and engines. `fleetbuild pull` and `fleetbuild deploy` hand that
copy (a directory store) to the device code, so every check runs there unchanged."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from fleetbuild.errors import FleetbuildError


def mirror_objects(store: Any, root: Path, keys: Sequence[str]) -> list[str]:
    """Copy store `keys` under root (same relative paths); the keys that exist."""
    from fleetbuild.store.api import NotFound

    found = []
    for key in keys:
        dest = root / key
        if dest.exists():
            found.append(key)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            store.download_file(key, dest)
            found.append(key)
        except NotFound:
            pass
    return found


def release_keys(store: Any, root: Path, project: str, version: str | None, channel: str | None) -> tuple[str, list[str]]:
    """(version, keys) of the channel file, the index and their signatures, mirrored under root."""
    prefix = f"releases/{project}"
    keys: list[str] = []
    if channel:
        key = f"{prefix}/channels/{channel}.json"
        if mirror_objects(store, root, [key]):
            body = (root / key).read_bytes()
            keys += [key] + mirror_objects(store, root, [
                f"{prefix}/channels/signatures/{hashlib.sha256(body).hexdigest()}.minisig"])
            version = json.loads(body).get("version")
    if not version:
        raise FleetbuildError(f"channel {channel} of {project} is not in the store {store.url}")
    key = f"{prefix}/{version}/index.json"
    if not mirror_objects(store, root, [key]):
        raise FleetbuildError(f"release {project} {version} is not in the store {store.url}")
    digest = hashlib.sha256((root / key).read_bytes()).hexdigest()
    keys += [key] + mirror_objects(store, root, [f"{prefix}/{version}/signatures/{digest}.minisig"])
    return version, keys
