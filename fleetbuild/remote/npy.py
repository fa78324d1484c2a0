"""Read .npy / .npz calibration batches without numpy: raw little-endian bytes, dtype and shape."""
import ast
import struct
import zipfile

MAGIC = b"\x93NUMPY"
DTYPES = {"<f4": ("float32", 4), "<f2": ("float16", 2), "|i1": ("int8", 1), "|u1": ("uint8", 1),
          "<i4": ("int32", 4), "<i8": ("int64", 8), "<f8": ("float64", 8), "|b1": ("bool", 1)}


class NpyError(ValueError):
    pass


class Array(object):
    __slots__ = ("dtype", "shape", "data")

    def __init__(self, dtype, shape, data):
        self.dtype, self.shape, self.data = dtype, tuple(shape), data

    @property
    def nbytes(self):
        return len(self.data)


def parse_npy(raw, name="array"):
    if raw[:6] != MAGIC:
        raise NpyError("{}: not a .npy file".format(name))
    major = bytearray(raw[6:7])[0]
    if major == 1:
        (length,), start = struct.unpack("<H", raw[8:10]), 10
    elif major in (2, 3):
        (length,), start = struct.unpack("<I", raw[8:12]), 12
    else:
        raise NpyError("{}: unsupported .npy version {}".format(name, major))
    try:
        header = ast.literal_eval(raw[start:start + length].decode("latin1"))
        descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise NpyError("{}: unreadable .npy header".format(name))
    if descr not in DTYPES:
        raise NpyError("{}: dtype {} not supported (use little-endian float32/float16/int8/...)".format(
            name, descr))
    if fortran:
        raise NpyError("{}: Fortran-order arrays are not supported (save with np.ascontiguousarray)".format(name))
    dtype, size = DTYPES[descr]
    count = 1
    for dim in shape:
        count *= dim
    data = raw[start + length:]
    if len(data) != count * size:
        raise NpyError("{}: {} data bytes, shape {} needs {}".format(name, len(data), shape, count * size))
    return Array(dtype, shape, data)


def load(path):
    """{input name or None: Array}: a .npy is one unnamed array, a .npz maps input names to arrays."""
    if path.endswith(".npz"):
        out = {}
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    out[member[:-4]] = parse_npy(archive.read(member), "{}:{}".format(path, member))
        return out
    with open(path, "rb") as handle:
        return {None: parse_npy(handle.read(), path)}
