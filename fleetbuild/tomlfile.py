"""TOML reading with errors that point at file:line:col."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 controllers
    import tomli as tomllib

from fleetbuild.errors import ConfigError

_POSITION = re.compile(r"^(.*?)\s*\(at line (\d+), column (\d+)\)$")


def loads_toml(text: str, file: object) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = _POSITION.match(message)
        if match:
            where = f"{file}:{match.group(2)}:{match.group(3)}"
            raise ConfigError(where, "", f"TOML syntax error: {match.group(1)}") from None
        raise ConfigError(file, "", f"TOML syntax error: {message}") from None


def load_toml(path: Path, shown_as: object | None = None) -> dict[str, Any]:
    """Parse a TOML file. `shown_as` is how errors name it (default: the path itself)."""
    shown = shown_as if shown_as is not None else path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(shown, "", f"file not found (resolved to {path.resolve()})") from None
    except IsADirectoryError:
        raise ConfigError(shown, "", "is a directory, not a TOML file") from None
    except PermissionError:
        raise ConfigError(shown, "", "permission denied") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(shown, "", f"not UTF-8 text (byte {err.start}); TOML files must be UTF-8") from None
    return loads_toml(text, shown)
