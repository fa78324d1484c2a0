"""Atomic file writes: a reader sees the old file or the new one, never a part."""
import errno
import json
import os
import tempfile


def write_bytes_atomic(path, data, durable=False):
    """Write `data` to `path` via a temp file in the same directory + rename.

    No fsync unless `durable`: every reader of worker output checks the engine's sha256 from the
    manifest, so a file cut short by a power loss is rebuilt, not trusted (and an fsync of a large
    engine costs tens of milliseconds per job).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; engines and manifests are read by other users
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(path, value):
    write_bytes_atomic(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path):
    with open(path, "rb") as handle:
        return json.loads(handle.read().decode("utf-8"))


def sha256_file(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_disk_full(err):
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
