"""The file:// store: a directory with the same layout as the S3 store.

Atomicity comes from the file system: every write goes to a temp file in the target directory and
is renamed into place; create-if-absent uses link(2), which fails if the name exists; replace-if-
unchanged holds an flock on the store's lock file while it compares the etag (sha256 of content).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

from fleetbuild.errors import ConfigError
from fleetbuild.store.api import NotFound, PreconditionFailed, StoreError, check_key


def path_from_url(url: str, root: Path) -> Path:
    """'file://./artifacts' and 'file:///abs' and plain paths; relative ones are under `root`."""
    if url.startswith("file://"):
        parsed = urlparse(url)
        text = unquote((parsed.netloc or "") + parsed.path)
    else:
        text = url
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (root / path).resolve()


class LocalStore:
    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = path_from_url(url, root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise NotFound(f"{self.url}: {key}: not found") from None
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise StoreError(f"{self.url}: {key}: no space left on device ({self.root})") from None
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise StoreError(f"{self.url}: {key}: permission denied ({self.root})") from None
            raise StoreError(f"{self.url}: {key}: {err.strerror or err}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read_bytes(self, key: str) -> tuple[bytes, str]:
        with self._errors(key):
            data = self._path(key).read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def write_bytes(self, key: str, data: bytes, *, if_match: str | None = None,
                    if_none_match: bool = False) -> str:
        dest = self._path(key)
        etag = hashlib.sha256(data).hexdigest()
        with self._errors(key):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._temp_with(dest, lambda handle: handle.write(data))
            try:
                if if_none_match:
                    try:
                        os.link(tmp, dest)
                    except FileExistsError:
                        raise PreconditionFailed(f"{self.url}: {key}: already exists") from None
                elif if_match is not None:
                    with self._lock():
                        try:
                            current = hashlib.sha256(dest.read_bytes()).hexdigest()
                        except FileNotFoundError:
                            current = None
                        if current != if_match:
                            raise PreconditionFailed(f"{self.url}: {key}: changed since it was read")
                        os.replace(tmp, dest)
                else:
                    os.replace(tmp, dest)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return etag

    def upload_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        with self._errors(key):
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as source:
                tmp = self._temp_with(dest, lambda handle: shutil.copyfileobj(source, handle, 1 << 20))
            os.replace(tmp, dest)

    def upload_verified(self, key: str, path: Path, sha256: str) -> None:
        """upload_file that hashes the bytes as they are copied and renames them into place only
        when they hash to `sha256`."""
        import hashlib as _hashlib

        from fleetbuild.store.blobs import BlobMismatch

        dest = self._path(key)
        digest = _hashlib.sha256()

        def copy(handle) -> None:
            with open(path, "rb") as source:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    digest.update(chunk)
                    handle.write(chunk)

        with self._errors(key):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._temp_with(dest, copy)
            if digest.hexdigest() != sha256:
                os.unlink(tmp)
                raise BlobMismatch(f"{self.url}: {key}: the bytes of {path} hash to {digest.hexdigest()[:12]}…: "
                                   "not stored")
            os.replace(tmp, dest)

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def sha256(self, key: str) -> str:
        from fleetbuild.store.blobs import sha256_of_file

        with self._errors(key):
            return sha256_of_file(self._path(key))

    def rename(self, key: str, new_key: str) -> None:
        target = self._path(new_key)
        with self._errors(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path(key), target)

    def download_file(self, key: str, path: Path) -> None:
        with self._errors(key):
            with open(self._path(key), "rb") as source:
                tmp = self._temp_with(path, lambda handle: shutil.copyfileobj(source, handle, 1 << 20))
            os.replace(tmp, path)

    def list(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(".tmp-") or name == ".lock":
                    continue
                key = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    yield key

    def delete(self, key: str) -> None:
        with self._errors(key):
            self._path(key).unlink()

    def stat(self, key: str) -> tuple[int, float]:
        with self._errors(key):
            info = self._path(key).stat()
        return info.st_size, info.st_mtime

    @staticmethod
    def _temp_with(dest: Path, write) -> str:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def local_store(url: str, options: dict, root: Path, source: str) -> LocalStore | None:
    if "://" in url and not url.startswith("file://"):
        return None
    if options:
        key = next(iter(options))
        raise ConfigError(source, f"store.{key}", "unknown key for a file:// store",
                          "file:// stores take only url")
    store = LocalStore(url, root)
    if store.root.exists() and not store.root.is_dir():
        raise ConfigError(source, "store.url", f"'{url}' is a file ({store.root}), not a store directory",
                          "point it at a directory (created on first use), e.g. file://./artifacts")
    return store
