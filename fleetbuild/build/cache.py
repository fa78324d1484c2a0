"""The build cache: a build key's manifest in the store, served only when its engine is intact."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping



class BuildCache:
    """Lookups and stores of built engines in one store. `verify` hashes every cached engine in full
    (a local store always does; S3 checks size and the checksum recorded at upload)."""

    def __init__(self, store: Any, hasher: Any, notify: Callable[[str], None], verify: bool = False) -> None:
        self.store, self.hasher, self.notify, self.verify = store, hasher, notify, verify
        self.signer: Any = None

    def lookup(self, key: str, job_id: str = "") -> dict[str, Any] | None:
        """The manifest of build `key` when its engine is in the store and intact; a bad engine is
        quarantined (and the job is built again)."""
        from fleetbuild.store.api import NotFound
        from fleetbuild.store.blobs import check_blob, quarantine

        try:
            manifest = json.loads(self.store.read_bytes(f"builds/{key}.json")[0])
            engine = manifest["engine"]
        except (NotFound, ValueError, KeyError, TypeError):
            return None
        problem = check_blob(self.store, engine["sha256"], engine.get("size"), self.hasher, self.verify)
        if problem == "missing":
            return None
        if problem is not None:
            moved = quarantine(self.store, engine["sha256"])
            self.notify(f"the stored engine of {job_id or key} is corrupted ({problem}): moved to {moved}, "
                        "building it again")
            return None
        return manifest

    def store_build(self, engine: Path, digest: str, manifest: Mapping[str, Any],
                    plugin_files: Mapping[str, Path] | None = None) -> None:
        """The engine blob and its plugin libraries' blobs (`plugin_files`: sha256 -> local file;
        each verified while it uploads), then the signature, then the manifest: a manifest is never
        visible before its blobs or unsigned."""
        from fleetbuild.store.blobs import blob_key, upload_blob

        if not self.store.exists(blob_key(digest)):
            upload_blob(self.store, engine, digest)
        for plugin in manifest.get("plugins") or []:
            sha = plugin.get("sha256")
            if sha and not self.store.exists(blob_key(sha)) and sha in (plugin_files or {}):
                upload_blob(self.store, plugin_files[sha], sha)
        data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
        if self.signer is not None:
            self.store.write_bytes(f"builds/{manifest['build_key']}.json.minisig", self.signer.sign(
                data, f"fleetbuild manifest {manifest['job_id']} {manifest['build_key']}").encode())
        self.store.write_bytes(f"builds/{manifest['build_key']}.json", data)
