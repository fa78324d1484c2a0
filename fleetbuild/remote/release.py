"""Checks a device makes before trusting a release index (standard library only, Python 3.6+):
signature by the fleet's key, the project and version it asked for, not expired, and not older
than the last index it accepted (no replay of an old or foreign index)."""
import hashlib
import json
import time

from .verify import SignatureError, verify_minisig


class ReleaseError(ValueError):
    pass


def signature_key(index_bytes, prefix):
    """Where the signature of these exact index bytes lives in the store."""
    return "{}/signatures/{}.minisig".format(prefix, hashlib.sha256(index_bytes).hexdigest())


def check_index(index_bytes, signature_text, public_key_text, project, version, min_sequence=0, now=None):
    """The index as a dict, when it is signed, current and the one asked for; else ReleaseError."""
    try:
        verify_minisig(index_bytes, signature_text, public_key_text)
    except SignatureError as err:
        raise ReleaseError("release index signature: {}".format(err))
    index = json.loads(index_bytes.decode("utf-8"))
    if index.get("project") != project or index.get("version") != version:
        raise ReleaseError("index is for {} {}, not {} {}".format(index.get("project"), index.get("version"),
                                                                  project, version))
    if index.get("expires", 0) < (time.time() if now is None else now):
        raise ReleaseError("index expired (sequence {})".format(index.get("sequence")))
    if index.get("sequence", 0) < min_sequence:
        raise ReleaseError("index sequence {} is older than {} already accepted".format(
            index.get("sequence"), min_sequence))
    return index
