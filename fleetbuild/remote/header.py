"""Read an engine's flavor and TensorRT version from its first bytes; no TensorRT needed.

Layout seen on TensorRT 8.6+/10.x and TensorRT-RTX 1.7 plans: bytes 0-3 are the magic ('ftrt' for
TensorRT, 'vtrt' for TensorRT-RTX); when the little-endian uint32 at 4-7 is 0, bytes 24-27 hold
major, minor, patch, build. Older plans (8.2, 8.5) carry the magic but not that version block.
"""
import struct

MAGIC = {b"ftrt": "tensorrt", b"vtrt": "tensorrt-rtx"}
HEADER_BYTES = 32


class HeaderError(ValueError):
    pass


def parse_header(data):
    """{'flavor', 'version' (or None), 'magic'} from the first bytes of a plan; raises HeaderError."""
    if len(data) < 8:
        raise HeaderError("file too short to be a TensorRT engine ({} bytes)".format(len(data)))
    magic = bytes(data[:4])
    flavor = MAGIC.get(magic)
    if flavor is None:
        raise HeaderError("not a TensorRT engine (magic {!r}, expected b'ftrt' or b'vtrt')".format(magic))
    version = None
    if len(data) >= 28 and struct.unpack("<I", bytes(data[4:8]))[0] == 0:
        major, minor, patch, build = bytearray(data[24:28])
        if major:
            version = "{}.{}.{}.{}".format(major, minor, patch, build)
    return {"flavor": flavor, "version": version, "magic": magic.decode("ascii")}


def read_header(path):
    with open(path, "rb") as handle:
        return parse_header(handle.read(HEADER_BYTES))
