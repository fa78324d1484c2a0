"""Engine blobs: stored only under the sha256 of their bytes, checked before reuse and signing.

- `upload_blob` hashes the file while it streams into the store and publishes it under
  blobs/sha256/<hex> only when the hash matches (file:// checks before its rename; S3 is sent the
  checksum with the upload, so a server that knows ChecksumSHA256 refuses changed bytes).
- `check_blob` is what a cache hit costs: the size always; the full sha256 where it is cheap (a
  local store, with the file-hash cache) or when asked (`--verify`).
- `quarantine` moves a bad blob to quarantine/sha256/<hex>.<time> so nothing reuses it and the
  evidence stays.
"""
from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

from fleetbuild.store.api import NotFound, StoreError

PREFIX = "blobs/sha256/"
CHUNK = 1 << 20


def blob_key(digest: str) -> str:
    return PREFIX + digest


class BlobMismatch(StoreError):
    """Bytes that do not hash to the name they were to be stored (or were found) under."""


def upload_blob(store: Any, path: Path, digest: str) -> None:
    """Store `path` as blobs/sha256/<digest>, refusing bytes that hash to anything else."""
    key = blob_key(digest)
    if hasattr(store, "upload_verified"):
        store.upload_verified(key, path, digest)
        return
    actual = sha256_of_file(path)                      # stores without a verified upload of their own
    if actual != digest:
        raise BlobMismatch(f"{path} hashes to {actual[:12]}…, not {digest[:12]}…: not stored")
    store.upload_file(key, path)


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stream_sha256(store: Any, key: str) -> str:
    """The sha256 of a stored object, read in chunks (never the whole engine in memory)."""
    if hasattr(store, "sha256"):
        return store.sha256(key)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "blob"
        store.download_file(key, local)
        return sha256_of_file(local)


def check_blob(store: Any, digest: str, size: int | None, hasher: Any = None, full: bool = False) -> str | None:
    """None when blobs/sha256/<digest> is there and intact as far as checked, else what is wrong."""
    key = blob_key(digest)
    try:
        stored_size = store.stat(key)[0]
    except NotFound:
        return "missing"
    if size is not None and stored_size != size:
        return f"{stored_size} bytes, the manifest says {size}"
    local = store.local_path(key) if hasattr(store, "local_path") else None
    if local is not None and hasher is not None and not full:
        actual = hasher.sha256(local)                  # cheap: remembered by (path, size, mtime, inode)
    elif full or local is not None:
        actual = stream_sha256(store, key)
    else:
        checksum = store.checksum_sha256(key) if hasattr(store, "checksum_sha256") else None
        if checksum is None:
            return None                                # remote, not asked to hash: size is what we know
        actual = checksum
    return None if actual == digest else f"its bytes hash to {actual[:12]}…"


def quarantine(store: Any, digest: str) -> str:
    """Move a bad blob out of the way; the key it now has."""
    key, dest = blob_key(digest), f"quarantine/sha256/{digest}.{int(time.time())}"
    if hasattr(store, "rename"):
        store.rename(key, dest)
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "blob"
        store.download_file(key, local)
        store.upload_file(dest, local)
    store.delete(key)
    return dest
