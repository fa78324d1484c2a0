"""Streamed, resumable, checked downloads for devices (Python 3.6, standard library).

An object goes to DEST.part in 4 MiB chunks (never the whole engine in memory), hashed on a second
thread as it arrives; an interrupted
download resumes from the .part's size with an HTTP Range request (or a seek, for a directory
store); the sha256 and size are checked before the file is renamed to DEST.
"""
import errno
import hashlib
import os

CHUNK = 4 << 20
BUFFERS = 4          # the hashing queue holds BUFFERS - 2, so a buffer is hashed before it is refilled


class _Hasher(object):
    """sha256 on a second thread: hashlib releases the GIL on large buffers, so hashing overlaps
    the network and the disk (on a Jetson Nano's Python 3.6, sha256 alone runs at ~230 MB/s)."""

    def __init__(self, digest):
        import queue
        import threading

        self.digest = digest
        self.queue = queue.Queue(maxsize=BUFFERS - 2)
        self.thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            chunk = self.queue.get()
            if chunk is None:
                return
            self.digest.update(chunk)

    def feed(self, chunk):
        self.queue.put(chunk)

    def finish(self):
        self.queue.put(None)
        self.thread.join()


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


def _fill(stream, view):
    """Read into `view` until it is full or the stream ends (a socket gives a little at a time)."""
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


def download(store, key, dest, sha256, size=None, url=None, progress=None, mirror=False):
    """Fetch `key` to `dest` (atomically, resuming dest.part); raise DownloadError when its bytes are
    not `sha256`. Returns the number of bytes transferred this time. `mirror`: the store is a local
    copy of the device's own (fleetbuild deploy's): the object is hard-linked rather than copied when
    it is on the same file system, and removed from it when it fails its check, so it is sent again."""
    if not mirror or url is not None or store.startswith(("http://", "https://")):
        return _copy(store, key, dest, sha256, size, url, progress)
    source = os.path.join(store, key)
    try:
        linked = _link(source, dest + ".part", dest, sha256, size)
        return _copy(store, key, dest, sha256, size) if linked is None else linked
    except Corrupted:
        _remove(source)
        raise


def _copy(store, key, dest, sha256, size=None, url=None, progress=None):
    """download() by streaming the object into dest.part. A resumed download whose whole is wrong
    starts once more from nothing: the .part it resumed may have been left damaged (a crash, a
    full disk), which says nothing about the store."""
    part = dest + ".part"
    try:
        return _stream(store, key, part, dest, sha256, size, url, progress)
    except _ResumedWrong:
        _remove(part)
        return _stream(store, key, part, dest, sha256, size, url, progress)


class _ResumedWrong(Exception):
    pass


def _stream(store, key, part, dest, sha256, size, url, progress):
    digest = hashlib.sha256()
    offset = 0
    if os.path.exists(part):
        with open(part, "rb") as handle:
            offset = _hash_into(digest, handle)
        if size is not None and offset > size:
            os.unlink(part)
            digest, offset = hashlib.sha256(), 0
    stream, resumed = _open(store, key, offset, url)
    if stream is not None and offset and not resumed:      # the server sent it all again: start over
        digest, offset = hashlib.sha256(), 0
    transferred = 0
    hasher = _Hasher(digest)
    buffers = [bytearray(CHUNK) for _ in range(BUFFERS)]    # reused: no 4 MiB allocation per chunk
    try:
        if stream is not None:
            with open(part, "ab" if offset else "wb") as out:
                turn = 0
                while True:
                    view = memoryview(buffers[turn % BUFFERS])
                    count = _fill(stream, view)
                    if not count:
                        break
                    hasher.feed(view[:count])   # hashed on another thread while the next chunk arrives
                    out.write(view[:count])
                    transferred += count
                    turn += 1
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
        hasher.finish()
    total = offset + transferred
    if (size is not None and total != size) or digest.hexdigest() != sha256:
        if offset:
            raise _ResumedWrong()
        os.unlink(part)
        if size is not None and total != size:
            raise Corrupted("{} bytes, the release says {}".format(total, size))
        raise Corrupted("sha256 {}..., the release says {}...".format(digest.hexdigest()[:16], sha256[:16]))
    os.replace(part, dest)
    return transferred


def _link(source, part, dest, sha256, size):
    """Hard-link `source` as `dest` after checking it; 0 bytes, or None when no link can be made."""
    if os.path.exists(part):
        os.unlink(part)
    try:
        os.link(source, part)
    except (IOError, OSError) as err:
        if getattr(err, "errno", None) == errno.ENOENT:
            raise NotThere("{}: not found".format(source))
        return None
    digest = hashlib.sha256()
    with open(part, "rb") as handle:
        total = _hash_into(digest, handle)
        os.fsync(handle.fileno())      # its bytes came from an upload nobody flushed
    if (size is not None and total != size) or digest.hexdigest() != sha256:
        os.unlink(part)
        raise Corrupted("sha256 {}... ({} bytes), the release says {}...".format(
            digest.hexdigest()[:16], total, sha256[:16]))
    os.replace(part, dest)
    return 0


def _hash_into(digest, handle):
    """Feed the rest of `handle` to `digest`; the number of bytes."""
    buffer = memoryview(bytearray(CHUNK))      # one buffer, reused: no fresh pages per chunk
    total = 0
    count = handle.readinto(buffer)
    while count:
        digest.update(buffer[:count])
        total += count
        count = handle.readinto(buffer)
    return total


def _remove(path):
    try:
        os.unlink(path)
    except (IOError, OSError):
        pass
