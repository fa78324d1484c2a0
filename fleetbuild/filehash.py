"""sha256 of files, remembered by (path, device, inode, size, mtime, ctime) as git's index and build
systems do: a user can set a file's mtime back (touch -d), not its ctime, which any write moves.

The cache is one small JSON file per path under CACHE/hashes/, written atomically, so concurrent
fleetbuild runs never see a torn entry. A stale or unreadable entry is simply recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from fleetbuild.remote.fsutil import sha256_file

__all__ = ["FileHasher", "default_cache_dir", "sha256_file", "write_json_atomic"]


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to `path` through a temp file + rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class FileHasher:
    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir / "hashes" if cache_dir else None
        self._memo: dict[tuple, str] = {}

    def sha256(self, path: Path) -> str:
        st = path.stat()
        stamp = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp in self._memo:
            return self._memo[stamp]
        entry = self._entry_path(path)
        if entry is not None:
            try:
                cached = json.loads(entry.read_text("utf-8"))
                if cached.get("stamp") == list(stamp):
                    self._memo[stamp] = cached["sha256"]
                    return cached["sha256"]
            except (OSError, ValueError, KeyError, AttributeError):
                pass
        digest = sha256_file(path)
        self._memo[stamp] = digest
        if entry is not None:
            try:
                write_json_atomic(entry, {"stamp": list(stamp), "sha256": digest})
            except OSError:
                pass  # a read-only cache only costs time
        return digest

    def _entry_path(self, path: Path) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")


def default_cache_dir(env: "os._Environ[str] | dict[str, str]") -> Path:
    """$FLEETBUILD_CACHE_DIR, else $XDG_CACHE_HOME/fleetbuild, else ~/.cache/fleetbuild."""
    if env.get("FLEETBUILD_CACHE_DIR"):
        return Path(env["FLEETBUILD_CACHE_DIR"])
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "fleetbuild"
