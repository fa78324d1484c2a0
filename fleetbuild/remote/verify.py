"""Signature checks for devices and build hosts: Ed25519 (RFC 8032) and minisign files, standard
library only (Python 3.6+). Verification only: signing happens on the controller.

minisign formats: a public key is "untrusted comment: ...\\n" + base64("Ed" + key id (8) + key (32));
a signature is an untrusted comment, base64(algorithm (2) + key id (8) + signature (64)), a
"trusted comment: ..." line and base64(global signature (64)) over signature + trusted comment.
Algorithm "ED" signs the BLAKE2b-512 of the file, "Ed" the file itself.
"""
import base64
import hashlib

_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


class SignatureError(ValueError):
    pass


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(p):
    x, y, z, _ = p
    a, b, c = x * x % _P, y * y % _P, 2 * z * z % _P
    h = a + b
    e, g = h - (x + y) * (x + y) % _P, a - b
    f = c + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _joint(s, p, k, q):
    """[s]p + [k]q with one doubling chain (Straus): about 40% fewer point operations than two
    separate multiplications."""
    table = {1: p, 2: q, 3: _add(p, q)}
    result = (0, 1, 1, 0)
    for bit in range(max(s.bit_length(), k.bit_length()) - 1, -1, -1):
        result = _double(result)
        which = (s >> bit & 1) | (k >> bit & 1) << 1
        if which:
            result = _add(result, table[which])
    return result


def _same(p, q):
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _decode(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        if sign:
            return None
        x = 0
    else:
        x = pow(x2, (_P + 3) // 8, _P)
        if (x * x - x2) % _P:
            x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P:
            return None
        if x & 1 != sign:
            x = _P - x
    return (x, y, 1, x * y % _P)


_BASE = _decode((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))


def ed25519_verify(public_key, message, signature):
    """True when `signature` (64 bytes) is `public_key`'s (32 bytes) Ed25519 signature of `message`."""
    if len(signature) != 64:
        return False
    a, r = _decode(public_key), _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % _L
    minus_a = ((_P - a[0]) % _P, a[1], a[2], (_P - a[3]) % _P)
    return _same(_joint(s, _BASE, k, minus_a), r)          # [s]B - [k]A == R


def _b64_line(text, what):
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        raise SignatureError("{} is not valid base64".format(what))


def parse_public_key(text):
    """(key id, 32-byte key) from a minisign public key file's text (or its base64 line alone)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    data = _b64_line(lines[-1] if lines else "", "public key")
    if len(data) != 42 or data[:2] != b"Ed":
        raise SignatureError("not a minisign Ed25519 public key")
    return data[2:10], data[10:]


def verify_minisig(data, signature_text, public_key_text):
    """Check a minisign signature of `data`; returns the trusted comment. Raises SignatureError."""
    key_id, key = parse_public_key(public_key_text)
    lines = signature_text.strip().splitlines()
    if len(lines) != 4 or not lines[0].startswith("untrusted comment:") or not lines[2].startswith("trusted comment: "):
        raise SignatureError("not a minisign signature file")
    raw = _b64_line(lines[1], "signature")
    if len(raw) != 74 or raw[:2] not in (b"Ed", b"ED"):
        raise SignatureError("unsupported minisign signature algorithm")
    if raw[2:10] != key_id:
        raise SignatureError("signed by another key (key id {} instead of {})".format(
            raw[2:10][::-1].hex().upper(), key_id[::-1].hex().upper()))
    message = hashlib.blake2b(data, digest_size=64).digest() if raw[:2] == b"ED" else data
    if not ed25519_verify(key, message, raw[10:]):
        raise SignatureError("signature does not match the content")
    trusted = lines[2][len("trusted comment: "):]
    if not ed25519_verify(key, raw[10:] + trusted.encode("utf-8"), _b64_line(lines[3], "global signature")):
        raise SignatureError("trusted comment signature does not match")
    return trusted
