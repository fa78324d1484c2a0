"""The names a device takes (project, model, channel) and release versions, checked with the same
rule the controller uses before any of them becomes part of a path, and paths that must stay inside
a directory (Python 3.6, standard library)."""
import os

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"
VERSION = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z"       # '+' for semver build metadata
RULE = "letters, digits, '.', '_' and '-' (starting with a letter or digit, at most 64 characters)"
VERSION_RULE = "letters, digits, '.', '_', '+' and '-' (starting with a letter or digit, at most 64 characters)"


class BadName(ValueError):
    """A name or path that must not be used."""


def is_name(value):
    import re          # here, not at import: the worker starts on every build and rarely checks a name

    return isinstance(value, str) and re.match(NAME, value) is not None and ".." not in value


def is_version(value):
    import re

    return isinstance(value, str) and re.match(VERSION, value) is not None and ".." not in value


def check_name(kind, value):
    if not is_name(value):
        raise BadName("{} {!r} is not a valid name: use {}".format(kind, value, RULE))
    return value


def check_version(value):
    if not is_version(value):
        raise BadName("version {!r} is not a valid release version: use {}".format(value, VERSION_RULE))
    return value


def inside(directory, path):
    """`path` if, with every symlink resolved, it is `directory` or below it; else BadName."""
    root = os.path.realpath(directory)
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise BadName("{} is outside {}: refused".format(path, directory))
    return path
