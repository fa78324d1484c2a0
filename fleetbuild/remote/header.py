"""Read an engine's flavor and TensorRT version from its first bytes; no TensorRT needed.

Layout seen on TensorRT 8.6+/10.x and TensorRT-RTX 1.7 plans: bytes 0-3 are the magic ('ftrt' for
TensorRT, 'vtrt' for TensorRT-RTX); when the little-endian uint32 at 4-7 is 0, bytes 24-27 hold
major, minor, patch, build and bytes 16-23 the plan's size in bytes (little-endian uint64; seen on
TensorRT-RTX 1.7.1: 135,644 for a 135,644-byte plan). Older plans (8.2, 8.5) carry the magic but
not that block.
"""
import struct

MAGIC = {b"ftrt": "tensorrt", b"vtrt": "tensorrt-rtx"}
HEADER_BYTES = 32


class HeaderError(ValueError):
    pass


def parse_header(data):
    """{'flavor', 'version' (or None), 'magic'} from the first bytes of a plan; raises HeaderError."""
    if len(data) < 8:
        raise HeaderError("not a TensorRT engine: only {} bytes".format(len(data)))
    magic = bytes(data[:4])
    flavor = MAGIC.get(magic)
    if flavor is None:
        raise HeaderError("not a TensorRT engine (magic {!r}, expected b'ftrt' or b'vtrt')".format(magic))
    version, size = None, None
    if len(data) >= 28 and struct.unpack("<I", bytes(data[4:8]))[0] == 0:
        major, minor, patch, build = bytearray(data[24:28])
        if major:
            version = "{}.{}.{}.{}".format(major, minor, patch, build)
            size = struct.unpack("<Q", bytes(data[16:24]))[0] or None
    return {"flavor": flavor, "version": version, "magic": magic.decode("ascii"), "size": size}


def read_header(path):
    """parse_header of a file, plus 'file_size' and 'truncated' (the file is shorter than the size
    its header records)."""
    import os

    with open(path, "rb") as handle:
        header = parse_header(handle.read(HEADER_BYTES))
    header["file_size"] = os.path.getsize(path)
    header["truncated"] = header["size"] is not None and header["file_size"] < header["size"]
    return header
