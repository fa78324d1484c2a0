"""A device's own Ed25519 key (RFC 8032), made at its first run, that signs its rollout reports so
one device cannot speak for another (Python 3.6, standard library: slow, ~10 ms a signature, and a
device signs a report only when something changed).

The key file (OUT/.fleetbuild-device.key, mode 0600) holds the 32-byte seed in hex; the public half
travels in every report and is pinned by the controller at the device's first report (or by
`deploy --install-agent`).
"""
import binascii
import hashlib
import os

from .verify import _BASE, _L, _P, _add, _double

KEY_FILE = ".fleetbuild-device.key"


def _multiply(scalar, point):
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _double(point)
        scalar >>= 1
    return result


def _encode(point):
    x, y, z, _ = point
    inverse = pow(z, _P - 2, _P)
    x, y = x * inverse % _P, y * inverse % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _expand(seed):
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def public_key(seed):
    return _encode(_multiply(_expand(seed)[0], _BASE))


def sign(seed, message):
    """The 64-byte Ed25519 signature of `message` by the key of `seed`."""
    scalar, prefix = _expand(seed)
    public = _encode(_multiply(scalar, _BASE))
    r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % _L
    big_r = _encode(_multiply(r, _BASE))
    k = int.from_bytes(hashlib.sha512(big_r + public + message).digest(), "little") % _L
    return big_r + ((r + k * scalar) % _L).to_bytes(32, "little")


def load_or_make(directory):
    """The seed of this device's key under `directory`, made (0600, atomically) when there is none."""
    path = os.path.join(directory, KEY_FILE)
    try:
        with open(path) as handle:
            seed = binascii.unhexlify(handle.read().strip())
        if len(seed) == 32:
            return seed
    except (IOError, OSError, ValueError, TypeError):
        pass
    seed = os.urandom(32)
    tmp = "{}.tmp-{}".format(path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(binascii.hexlify(seed).decode("ascii") + "\n")
    os.replace(tmp, path)
    return seed
