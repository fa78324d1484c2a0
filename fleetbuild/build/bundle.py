"""The worker zipapp: fleetbuild/remote packed as `fleetbuild_remote` in one .pyz file.

Deterministic (sorted entries, fixed timestamps), so the same fleetbuild builds the same bytes and
hosts can cache it by sha256.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

REMOTE = Path(__file__).resolve().parent.parent / "remote"
PACKAGE = "fleetbuild_remote"
SHEBANG = b"#!/usr/bin/env python3\n"
MAIN = b"""import sys
if sys.version_info < (3, 6):
    sys.stderr.write("fleetbuild-remote needs Python 3.6 or newer, not %s\\n" % sys.version.split()[0])
    sys.exit(3)
from fleetbuild_remote.cli import main
sys.exit(main())
"""
EPOCH = (1980, 1, 1, 0, 0, 0)


def zipapp_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)

        add("__main__.py", MAIN)
        for path in sorted(REMOTE.rglob("*.py")):
            relative = path.relative_to(REMOTE).as_posix()
            add(f"{PACKAGE}/{relative}", path.read_bytes())
    return SHEBANG + buffer.getvalue()


def build_zipapp(dest: Path) -> tuple[Path, str]:
    """Write the zipapp to `dest` (a file, or a directory for fleetbuild-remote.pyz); (path, sha256)."""
    data = zipapp_bytes()
    if dest.is_dir():
        dest = dest / "fleetbuild-remote.pyz"
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    os.replace(tmp, dest)
    return dest, hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class WorkerArchive:
    """The worker as the probe command carries it to a host: base64 of the zipapp, named by sha256."""
    sha256: str
    base64: str

    @property
    def name(self) -> str:
        """The worker's directory on a host, under worker/ (the name `ps` shows there)."""
        return f"fleetbuild-remote-{self.sha256[:16]}"

    @classmethod
    def build(cls) -> "WorkerArchive":
        data = zipapp_bytes()
        return cls(hashlib.sha256(data).hexdigest(), base64.b64encode(data).decode("ascii"))
