"""The ArtifactStore protocol every store (file://, s3://, plugins) implements.

Keys are '/'-separated relative paths (see layout.py). Writes are atomic: a reader sees the old
object or the new one, never a part. Conditional writes are what make release indexes safe with
concurrent publishers: `if_none_match=True` creates only if absent, `if_match=ETAG` replaces only
the version that was read.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

from fleetbuild.errors import EnvironmentProblem

_KEY = re.compile(r"^(?!/)(?!.*//)[A-Za-z0-9._+@=-]+(/[A-Za-z0-9._+@=-]+)*$")


class StoreError(EnvironmentProblem):
    """The store could not be read or written (unreachable, denied, full)."""


class NotFound(StoreError):
    pass


class PreconditionFailed(StoreError):
    """A conditional write lost: the object exists (if_none_match) or changed (if_match)."""


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"invalid store key {key!r}")
    return key


@runtime_checkable
class ArtifactStore(Protocol):
    url: str

    def exists(self, key: str) -> bool: ...

    def read_bytes(self, key: str) -> tuple[bytes, str]:
        """(content, etag); raises NotFound."""

    def write_bytes(self, key: str, data: bytes, *, if_match: str | None = None,
                    if_none_match: bool = False) -> str:
        """Write atomically; returns the new etag; raises PreconditionFailed when a condition fails."""

    def upload_file(self, key: str, path: Path) -> None: ...

    def download_file(self, key: str, path: Path) -> None:
        """Download to `path` atomically (a partial download never appears at `path`)."""

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def delete(self, key: str) -> None: ...

    def stat(self, key: str) -> tuple[int, float]:
        """(size in bytes, last-modified time as a Unix timestamp); raises NotFound."""
