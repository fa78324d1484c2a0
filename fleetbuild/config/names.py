"""One validator for every name that becomes part of a store key or a path: project, model,
target and variant names, release versions and channels. A bad one is a one-line error before
anything is written (at the CLI edge, in fleet.toml, and again in the store-facing code). The rule
itself is fleetbuild.remote.names', so devices check names exactly as the controller does."""
from __future__ import annotations

from fleetbuild.errors import UsageError
from fleetbuild.remote.names import RULE, VERSION_RULE, is_name, is_version

__all__ = ["RULE", "VERSION_RULE", "BadName", "check_name", "check_version", "is_name", "is_version"]


class BadName(UsageError):
    pass


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


def name_argument(kind: str):
    """argparse type= for a name option (--model, --project, ...)."""
    import argparse

    def parse(value: str) -> str:
        if not is_name(value):
            raise argparse.ArgumentTypeError(f"{kind} {value!r} is not a valid name: use {RULE}")
        return value
    return parse
