"""Units of the remote package (header, npy, JetPack table, version headers) and its Python floor."""
from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fleetbuild.remote import npy
from fleetbuild.remote.header import HeaderError, parse_header
from fleetbuild.remote.probe import JETPACK_BY_L4T, cc_from_name, jetpack_for_l4t, parse_nvinfer_version
from fleetbuild.config.targets import shipped_targets

ROOT = Path(__file__).resolve().parents[2]


def test_remote_code_and_fakes_run_on_python_36():
    """vermin: nothing in fleetbuild/remote (or the fakes hosts load) needs more than Python 3.6."""
    vermin = Path(sys.executable).parent / "vermin"
    proc = subprocess.run([str(vermin), "--no-tips", "-t=3.6-", "--violations",
                           "--eval-annotations", str(ROOT / "fleetbuild" / "remote"),
                           str(ROOT / "tests" / "fixtures" / "fake_tensorrt")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_remote_imports_only_the_standard_library():
    proc = subprocess.run([sys.executable, "-c", (
        "import sys, pkgutil, importlib; import fleetbuild.remote as r\n"
        "before = set(sys.modules)\n"
        "for m in pkgutil.walk_packages(r.__path__, 'fleetbuild.remote.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "extra = {n.split('.')[0] for n in set(sys.modules) - before}\n"
        "print(sorted(extra - set(sys.stdlib_module_names) - {'fleetbuild'}))")], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_jetpack_table_agrees_with_targets():
    for target in shipped_targets():
        for release in target.jetpack:
            assert jetpack_for_l4t(release.l4t + ".0") == release.jetpack, (target.name, release)
    assert jetpack_for_l4t("36.4.3") == "6.2" and jetpack_for_l4t("35.5.0") == "5.1.3"
    assert jetpack_for_l4t("31.1.0") is None
    assert all(prefix.count(".") <= 2 for prefix, _ in JETPACK_BY_L4T)


@pytest.mark.parametrize("name,cc", [("Tesla T4", "7.5"), ("NVIDIA A100-SXM4-80GB", "8.0"), ("NVIDIA A10G", "8.6"),
                                     ("NVIDIA L4", "8.9"), ("NVIDIA H100 80GB HBM3", "9.0"), ("Tesla V100-SXM2-16GB", "7.0"),
                                     ("Mystery GPU", None)])
def test_cc_from_name(name, cc):
    assert cc_from_name(name) == cc


def test_nvinfer_version_header_forms():
    assert parse_nvinfer_version("#define NV_TENSORRT_MAJOR 8\n#define NV_TENSORRT_MINOR 2\n"
                                 "#define NV_TENSORRT_PATCH 1\n#define NV_TENSORRT_BUILD 8\n") == "8.2.1.8"
    assert parse_nvinfer_version("#define TRT_MAJOR_ENTERPRISE 10\n#define TRT_MINOR_ENTERPRISE 3\n"
                                 "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n"
                                 "#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE\n") == "10.3"
    assert parse_nvinfer_version("nothing here") is None


def test_header_parsing():
    rtx = b"vtrt" + struct.pack("<I", 0) + b"\0" * 8 + struct.pack("<Q", 135644) + bytes([1, 7, 1, 116]) + b"\0" * 4
    assert parse_header(rtx) == {"flavor": "tensorrt-rtx", "version": "1.7.1.116", "magic": "vtrt", "size": 135644}
    old = b"ftrt" + struct.pack("<I", 0x1234) + b"\0" * 24
    assert parse_header(old) == {"flavor": "tensorrt", "version": None, "magic": "ftrt", "size": None}
    with pytest.raises(HeaderError, match=r"not a TensorRT engine \(magic b'\\x7fELF'"):
        parse_header(b"\x7fELF" + b"\0" * 28)
    with pytest.raises(HeaderError, match="not a TensorRT engine: only 6 bytes"):
        parse_header(b"hello\n")
    with pytest.raises(HeaderError, match="not a TensorRT engine: only 4 bytes"):
        parse_header(b"ftrt")


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "int64"])
def test_npy_reader_matches_numpy(dtype):
    array = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    buffer = io.BytesIO()
    np.save(buffer, array)
    parsed = npy.parse_npy(buffer.getvalue())
    assert parsed.dtype == dtype and parsed.shape == (2, 3, 4) and parsed.data == array.tobytes()


def test_npy_reader_refuses_what_it_cannot_copy():
    buffer = io.BytesIO()
    np.save(buffer, np.asfortranarray(np.ones((2, 3), np.float32)))
    with pytest.raises(npy.NpyError, match="Fortran-order"):
        npy.parse_npy(buffer.getvalue(), "f.npy")
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3, ">f4"))
    with pytest.raises(npy.NpyError, match="dtype >f4 not supported"):
        npy.parse_npy(buffer.getvalue(), "b.npy")
    with pytest.raises(npy.NpyError, match="not a .npy file"):
        npy.parse_npy(b"PK\x03\x04", "z.npy")


@pytest.mark.parametrize("where", ["same file system", "other file system"])
def test_a_mirror_download_links_where_it_can_and_checks_either_way(tmp_path, where, request):
    """download(mirror=True) hard-links from the device's own store copy (no second copy of the engine
    on the device) and copies where no link can be made (another file system: /dev/shm is a tmpfs);
    an object that fails its check is dropped from the mirror, so the next deploy sends it again."""
    import hashlib
    import os
    import shutil
    import tempfile

    from fleetbuild.remote.download import Corrupted, download

    if where == "other file system":
        if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
            pytest.skip("no second file system at /dev/shm")
        store = Path(tempfile.mkdtemp(dir="/dev/shm"))
        request.addfinalizer(lambda: shutil.rmtree(store, ignore_errors=True))
    else:
        store = tmp_path / "store"
    data = b"engine" * 5000
    digest = hashlib.sha256(data).hexdigest()
    (store / "blobs" / "sha256").mkdir(parents=True)
    (store / "blobs" / "sha256" / digest).write_bytes(data)
    dest = tmp_path / "m.plan"
    copied = download(str(store), f"blobs/sha256/{digest}", str(dest), digest, len(data), mirror=True)
    assert copied == (0 if where == "same file system" else len(data))
    linked = dest.stat().st_ino == (store / "blobs" / "sha256" / digest).stat().st_ino
    assert dest.read_bytes() == data and linked == (where == "same file system")
    bad = hashlib.sha256(b"other").hexdigest()
    (store / "blobs" / "sha256" / bad).write_bytes(b"not the other")
    with pytest.raises(Corrupted):
        download(str(store), f"blobs/sha256/{bad}", str(tmp_path / "x.plan"), bad, None, mirror=True)
    assert not (store / "blobs" / "sha256" / bad).exists() and not (tmp_path / "x.plan").exists()
    assert not list(tmp_path.glob("*.part"))


# RFC 8032 section 7.1, TEST 1 and TEST 2: (public key, message, signature)
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
]


@pytest.mark.parametrize("public, message, signature", RFC8032)
def test_device_ed25519_accepts_the_rfc_8032_vectors(public, message, signature):
    from fleetbuild.remote.verify import ed25519_verify

    public, message, signature = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert ed25519_verify(public, message, signature)
    assert not ed25519_verify(public, message + b"\0", signature)


def test_device_ed25519_agrees_with_the_cryptography_package():
    """The devices' standard-library verifier against OpenSSL's (through `cryptography`): good
    signatures, every byte of a signature flipped in turn, another message, another key."""
    import os

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from fleetbuild.remote.verify import ed25519_verify

    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    for round_ in range(64):
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        message = os.urandom(round_ * 3)
        signature = key.sign(message)
        assert ed25519_verify(public, message, signature)
        flipped = bytearray(signature)
        flipped[round_] ^= 1 << (round_ % 8)
        assert not ed25519_verify(public, message, bytes(flipped))
        assert not ed25519_verify(public, message + b"x", signature)
        assert not ed25519_verify(other, message, signature)
