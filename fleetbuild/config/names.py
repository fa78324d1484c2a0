"""One validator for every name that becomes part of a store key or a path: project, model,
target and variant names, release versions and channels. A bad one is a one-line error before
anything is written (at the CLI edge, in fleet.toml, and again in the store-facing code)."""
from __future__ import annotations

import re

from fleetbuild.errors import UsageError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")       # '+' for semver build metadata
RULE = "letters, digits, '.', '_' and '-' (starting with a letter or digit, at most 64 characters)"
VERSION_RULE = "letters, digits, '.', '_', '+' and '-' (starting with a letter or digit, at most 64 characters)"


class BadName(UsageError):
    pass


def is_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None and ".." not in value


def is_version(value: object) -> bool:
    return isinstance(value, str) and _VERSION.fullmatch(value) is not None and ".." not in value


def check_name(kind: str, value: str) -> str:
    """`value` if it is a valid project/model/target/variant/channel name, else BadName."""
    if not is_name(value):
        raise BadName(f"{kind} {value!r} is not a valid name: use {RULE}")
    return value


def check_version(value: str) -> str:
    if not is_version(value):
        raise BadName(f"version {value!r} is not a valid release version: use {VERSION_RULE}")
    return value


def version_argument(value: str) -> str:
    """argparse type= for --version."""
    import argparse

    if not is_version(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid release version: use {VERSION_RULE}")
    return value


def channel_argument(value: str) -> str:
    """argparse type= for --channel."""
    import argparse

    if not is_name(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid channel name: use {RULE}")
    return value
