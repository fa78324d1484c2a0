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


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key_parts(text: str) -> tuple[list[str], int] | None:
    """A dotted TOML key at the start of `text` (bare or quoted parts); (parts, characters read)."""
    parts, pos = [], 0
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] in "\"'":
            quote = text[pos]
            end = text.find(quote, pos + 1)
            if end < 0:
                return None
            parts.append(text[pos + 1:end])
            pos = end + 1
        else:
            match = _BARE.match(text, pos)
            if not match:
                return None
            parts.append(match.group())
            pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


def key_lines(text: str) -> dict[tuple, int]:
    """1-based line numbers of the tables, keys and inline-table array entries of a TOML document:
    ("models", "conv") for `[models.conv]` (or the first key written under it), ("matrix",
    "include", 2) for the third `{...}` of `include = [...]` or the third `[[matrix.include]]`.
    Best effort, for pointing at lines (annotations); the document is parsed for real elsewhere."""
    found: dict[tuple, int] = {}
    table: tuple = ()
    counts: dict[tuple, int] = {}
    lines = text.splitlines()
    index = 0

    def note(key: tuple, line: int) -> None:
        for size in range(1, len(key) + 1):
            found.setdefault(key[:size], line)

    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        number = index + 1
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            parsed = _key_parts(stripped[2:])
            if parsed:
                base = tuple(parsed[0])
                position = counts.get(base, 0)
                counts[base] = position + 1
                table = base + (position,)
                note(table, number)
            continue
        if stripped.startswith("["):
            parsed = _key_parts(stripped[1:])
            if parsed:
                table = tuple(parsed[0])
                note(table, number)
            continue
        parsed = _key_parts(stripped)
        if not parsed or parsed[1] >= len(stripped) or stripped[parsed[1]] != "=":
            continue
        key = table + tuple(parsed[0])
        note(key, number)
        value = stripped[parsed[1] + 1:].lstrip()
        if value.startswith("["):                      # an array: find its inline tables, maybe over lines
            index = _array_entries(lines, index - 1, line.index("[", line.index("=")), key, note)
    return found


def _array_entries(lines: list[str], row: int, col: int, key: tuple, note: Any) -> int:
    """Record the line of each top-level `{` of the array starting at lines[row][col]; returns the
    index of the line after the array's end."""
    depth, entry, quote = 0, 0, ""
    while row < len(lines):
        line = lines[row]
        while col < len(line):
            char = line[col]
            if quote:
                if char == "\\" and quote == '"':
                    col += 1
                elif char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char == "#":
                break
            elif char in "[{":
                if char == "{" and depth == 1:
                    note(key + (entry,), row + 1)
                    entry += 1
                depth += 1
            elif char in "]}":
                depth -= 1
                if depth == 0:
                    return row + 1
            col += 1
        row, col = row + 1, 0
    return row
