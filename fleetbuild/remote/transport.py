"""Reads of small store objects (Python 3.6, standard library): `pull`'s, and the agent's
conditional ones.

HTTP(S) stores: a GET with If-None-Match, so an unchanged object costs one request and a 304 with
no body. Directory stores: the file's (inode, size, mtime) stands in for the ETag, so an unchanged
file is not read at all. COUNTS tallies requests and bytes received (bench/rollout.py reads it).
"""
import errno
import os

COUNTS = {"requests": 0, "bytes": 0}


class PullError(Exception):
    def __init__(self, message, reasons=()):
        Exception.__init__(self, message)
        self.reasons = list(reasons)


class Missing(PullError):
    """The store answered, and has no such object (HTTP 404, no such file)."""


def fetch_if_changed(store, key, etag=None, urls=None):
    """(body, etag) of store/key, or (None, etag) when it still has `etag`; Missing when absent."""
    url = (urls or {}).get(key)
    if url is not None or store.startswith(("http://", "https://")):
        from urllib.error import HTTPError, URLError
        from urllib.request import Request, urlopen

        request = Request(url or store.rstrip("/") + "/" + key)
        if etag:
            request.add_header("If-None-Match", etag)
        COUNTS["requests"] += 1
        try:
            with urlopen(request, timeout=60) as response:
                body = response.read()
                COUNTS["bytes"] += len(body)
                return body, response.headers.get("ETag")
        except HTTPError as err:
            if err.code == 304:
                return None, etag
            if err.code in (403, 404):             # S3 answers 403 for a missing key without list rights
                raise Missing("{}: HTTP {} for {}".format(store, err.code, key))
            raise PullError("{}: HTTP {} for {}".format(store, err.code, key))
        except URLError as err:
            raise PullError("{}: cannot reach the store ({})".format(store, err.reason))
    path = os.path.join(store, key)
    COUNTS["requests"] += 1
    try:
        info = os.stat(path)
        found = "{}-{}-{}".format(info.st_ino, info.st_size, info.st_mtime_ns)
        if found == etag:
            return None, etag
        with open(path, "rb") as handle:
            body = handle.read()
    except (IOError, OSError) as err:
        if not os.path.isdir(store):
            raise PullError("the store {} does not exist (check --store)".format(store))
        if err.errno == errno.ENOENT:
            raise Missing("{}: {}: not found".format(store, key))
        raise PullError("{}: {}: {}".format(store, key, err.strerror or err))
    COUNTS["bytes"] += len(body)
    return body, found
