"""Streamed, resumable, checked downloads for devices (Python 3.6, standard library).

An object goes to DEST.part in 1 MiB chunks (never the whole engine in memory); an interrupted
download resumes from the .part's size with an HTTP Range request (or a seek, for a directory
store); the sha256 and size are checked before the file is renamed to DEST.
"""
import errno
import hashlib
import os

CHUNK = 1 << 20


class DownloadError(Exception):
    pass


class NotThere(DownloadError):
    """The store answered and has no such object."""


class Corrupted(DownloadError):
    """The whole object arrived and is not what the release says (size or sha256)."""


def _open(store, key, offset, url=None):
    """(stream, resumed?) of `key` from `offset` on."""
    if url is not None or store.startswith(("http://", "https://")):
        from urllib.error import HTTPError, URLError
        from urllib.request import Request, urlopen

        request = Request(url or store.rstrip("/") + "/" + key)
        if offset:
            request.add_header("Range", "bytes={}-".format(offset))
        try:
            response = urlopen(request, timeout=60)
        except HTTPError as err:
            if err.code == 416 and offset:                 # the .part is already complete
                return None, True
            kind = NotThere if err.code in (403, 404) else DownloadError
            raise kind("HTTP {} for {}".format(err.code, key))
        except URLError as err:
            raise DownloadError("cannot reach the store ({})".format(err.reason))
        return response, response.status == 206
    path = os.path.join(store, key)
    try:
        handle = open(path, "rb")
    except (IOError, OSError) as err:
        if getattr(err, "errno", None) == errno.ENOENT:
            raise NotThere("{}: not found".format(key))
        raise DownloadError("{}: {}".format(key, err.strerror or err))
    handle.seek(offset)
    return handle, True


def download(store, key, dest, sha256, size=None, url=None, progress=None):
    """Fetch `key` to `dest` (atomically, resuming dest.part); raise DownloadError when its bytes are
    not `sha256`. Returns the number of bytes transferred this time."""
    part = dest + ".part"
    digest = hashlib.sha256()
    offset = 0
    if os.path.exists(part):
        with open(part, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
                offset += len(chunk)
        if size is not None and offset > size:
            os.unlink(part)
            digest, offset = hashlib.sha256(), 0
    stream, resumed = _open(store, key, offset, url)
    if stream is not None and offset and not resumed:      # the server sent it all again: start over
        digest, offset = hashlib.sha256(), 0
    transferred = 0
    try:
        if stream is not None:
            with open(part, "ab" if offset else "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    transferred += len(chunk)
                    if progress is not None:
                        progress(offset + transferred)
                out.flush()
                os.fsync(out.fileno())
    except (IOError, OSError) as err:
        if getattr(err, "errno", None) == errno.ENOSPC:
            raise DownloadError("disk full while downloading {} ({} bytes kept in {} for a resume)".format(
                key, offset + transferred, part))
        raise DownloadError("download of {} stopped: {} ({} bytes kept for a resume)".format(
            key, getattr(err, "strerror", None) or err, offset + transferred))
    finally:
        if stream is not None:
            stream.close()
    total = offset + transferred
    if size is not None and total != size:
        os.unlink(part)
        raise Corrupted("{} bytes, the release says {}".format(total, size))
    if digest.hexdigest() != sha256:
        os.unlink(part)
        raise Corrupted("sha256 {}..., the release says {}...".format(digest.hexdigest()[:16], sha256[:16]))
    os.replace(part, dest)
    return transferred
