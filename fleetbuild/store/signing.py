"""Signing keys and minisign-format signatures (so `minisign -V` verifies them), made with
`cryptography`. The secret key file holds a PKCS#8 PEM (encrypted when
$FLEETBUILD_SIGNING_PASSPHRASE is set) and the key id; the public key file is minisign's format.
Verification lives in fleetbuild.remote.verify (standard library only, for devices)."""
from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from fleetbuild.errors import ConfigError, UsageError

KEY_HEADER = "# fleetbuild signing key (keep it secret). key id: "


@dataclass(frozen=True)
class Signer:
    key_id: bytes              # 8 bytes, as minisign stores it
    private_key: object

    @property
    def key_id_text(self) -> str:
        return self.key_id[::-1].hex().upper()   # minisign prints the little-endian id

    def public_key_text(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return (f"untrusted comment: minisign public key {self.key_id_text}\n"
                + base64.b64encode(b"Ed" + self.key_id + raw).decode() + "\n")

    def sign(self, data: bytes, trusted_comment: str) -> str:
        """A minisign signature file (prehashed "ED" mode) for `data`."""
        if "\n" in trusted_comment:
            raise ValueError("a trusted comment is one line")
        signature = self.private_key.sign(hashlib.blake2b(data, digest_size=64).digest())
        global_signature = self.private_key.sign(signature + trusted_comment.encode("utf-8"))
        return (f"untrusted comment: signature from fleetbuild key {self.key_id_text}\n"
                + base64.b64encode(b"ED" + self.key_id + signature).decode() + "\n"
                + f"trusted comment: {trusted_comment}\n"
                + base64.b64encode(global_signature).decode() + "\n")


def generate(directory: Path, env: Mapping[str, str], force: bool = False) -> tuple[Path, Path, Signer]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (BestAvailableEncryption, Encoding, NoEncryption,
                                                              PrivateFormat)

    secret, public = directory / "fleetbuild.key", directory / "fleetbuild.pub"
    for path in (secret, public):
        if path.exists() and not force:
            raise UsageError(f"{path} already exists (use --force to replace it)")
    directory.mkdir(parents=True, exist_ok=True)
    signer = Signer(os.urandom(8), Ed25519PrivateKey.generate())
    passphrase = env.get("FLEETBUILD_SIGNING_PASSPHRASE")
    pem = signer.private_key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8,
        BestAvailableEncryption(passphrase.encode()) if passphrase else NoEncryption()).decode()
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(KEY_HEADER + signer.key_id.hex() + "\n" + pem)
    public.write_text(signer.public_key_text())
    return secret, public, signer


def load(path: Path, env: Mapping[str, str], shown: str | None = None) -> Signer:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    shown = shown or str(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(shown, "", f"cannot read the signing key: {err.strerror or err}",
                          "create one with `fleetbuild keys generate`") from None
    match = re.match(re.escape(KEY_HEADER) + r"([0-9a-f]{16})\n", text)
    if not match:
        raise ConfigError(shown, "", "not a fleetbuild signing key", "create one with `fleetbuild keys generate`")
    passphrase = env.get("FLEETBUILD_SIGNING_PASSPHRASE")
    try:
        key = load_pem_private_key(text[match.end():].encode(), passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as err:
        raise ConfigError(shown, "", f"cannot load the signing key ({err}); is FLEETBUILD_SIGNING_PASSPHRASE "
                          "right?") from None
    return Signer(bytes.fromhex(match.group(1)), key)
