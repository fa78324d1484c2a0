"""Checked reading of TOML tables: every error names the file, the key path, what was expected.

A Reader wraps one table. `take` converts a key's value (or raises ConfigError), `finish` rejects
the keys nobody took, with a did-you-mean. Converters are plain functions value -> value that
raise Invalid(expected) on a wrong value.
"""
from __future__ import annotations

import datetime
import difflib
import re
from typing import Any, Callable, Iterable, Sequence

from fleetbuild.errors import ConfigError

_MISSING = object()
Converter = Callable[[Any], Any]


class Invalid(ValueError):
    """Raised by a converter: `expected` says what the value should have been."""

    def __init__(self, expected: str, hint: str = "") -> None:
        super().__init__(expected)
        self.expected, self.hint = expected, hint


def toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "date-time"
    return type(value).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'did you mean 'x'?' for the closest choice, or '' when nothing is close.

    Close means difflib's ratio >= 0.6, or a choice that starts with the word (dla -> dla_core),
    or, for short names, one substituted character (t5 -> t4).
    """
    choices = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close and len(word) >= 3:
        close = [c for c in choices if c.startswith(word)][:1]
    if not close:
        close = [c for c in choices if len(c) == len(word) and sum(a != b for a, b in zip(c, word)) == 1][:1]
    return f"did you mean '{close[0]}'?" if close else ""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_KEY_PATH = re.compile(r"[A-Za-z0-9_-]+(\[\d+\])*(\.[A-Za-z0-9_-]+(\[\d+\])*)*")


def join_key(path: str, key: str | int) -> str:
    """Append a key (or an index, or an already-joined relative path like 'exclude[0].target')."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _KEY_PATH.fullmatch(key):
        key = '"' + key.replace('"', '\\"') + '"'
    return f"{path}.{key}" if path else key


class Reader:
    def __init__(self, file: object, table: Any, path: str = "") -> None:
        self.file, self.path = file, path
        if not isinstance(table, dict):
            raise ConfigError(file, path, f"expected a table, got {toml_type(table)}")
        self.table = table
        self._taken: set[str] = set()

    def key(self, key: str | int) -> str:
        return join_key(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.table

    def take(self, key: str, convert: Converter, default: Any = _MISSING, *, hint: str = "") -> Any:
        self._taken.add(key)
        if key not in self.table:
            if default is _MISSING:
                spelt = [k for k in self.table if isinstance(k, str) and did_you_mean(k, [key])]
                if spelt:                # say what the user wrote, not only what is missing
                    raise ConfigError(self.file, self.key(spelt[0]), f"unknown key (did you mean '{key}'? "
                                      f"'{key}' is required here)", hint)
                raise ConfigError(self.file, self.key(key), "required key is missing", hint)
            return default
        return self.convert(key, self.table[key], convert)

    def convert(self, key: str | int, value: Any, convert: Converter) -> Any:
        try:
            return convert(value)
        except Invalid as err:
            raise ConfigError(self.file, self.key(key),
                              f"expected {err.expected}, got {describe(value)}", err.hint) from None

    def sub(self, key: str) -> "Reader":
        """A Reader over the sub-table `key` (empty when absent)."""
        self._taken.add(key)
        return Reader(self.file, self.table.get(key, {}), self.key(key))

    def items(self) -> list[tuple[str, Any]]:
        """All entries, marking them taken (for tables whose keys are user-chosen names)."""
        self._taken.update(self.table)
        return list(self.table.items())

    def finish(self, allowed: Sequence[str] | None = None) -> None:
        """Reject keys nobody took. `allowed` widens the did-you-mean vocabulary."""
        for key in self.table:
            if key not in self._taken:
                hint = did_you_mean(key, list(allowed or ()) + sorted(self._taken))
                raise ConfigError(self.file, self.key(key), "unknown key", hint)


def describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{toml_type(value)} {text}"


# ---- converters --------------------------------------------------------------------------------

def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("a string")
    return value


def nonempty_string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("a non-empty string")
    return value


def name(value: Any) -> str:
    """A project, model, target or variant name: it becomes part of job ids, keys and file names."""
    from fleetbuild.config.names import RULE, is_name

    if not is_name(value):
        raise Invalid(f"a name of {RULE}")
    return value


def version(value: Any) -> str:
    """A release version: it becomes part of store keys."""
    from fleetbuild.config.names import VERSION_RULE, is_version

    if not is_version(value):
        raise Invalid(f"a version of {VERSION_RULE}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("true or false")
    return value


def integer(lo: int | None = None, hi: int | None = None) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("an integer" + _range_text(lo, hi))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise Invalid("an integer" + _range_text(lo, hi))
        return value
    return convert


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


def one_of(*choices: str) -> Converter:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            raise Invalid("one of " + ", ".join(f"'{c}'" for c in choices), hint)
        return value
    return convert


def array_of(item: Converter, what: str, *, nonempty: bool = False, unique: bool = True) -> Converter:
    def convert(value: Any) -> tuple:
        if not isinstance(value, list) or (nonempty and not value):
            raise Invalid(("a non-empty " if nonempty else "an ") + f"array of {what}")
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except Invalid as err:
                raise Invalid(f"an array of {what} (element {index}: {err.expected})", err.hint) from None
        if unique and len(set(out)) != len(out):
            dup = next(x for x in out if out.count(x) > 1)
            raise Invalid(f"an array of {what} without duplicates ('{dup}' repeats)")
        return tuple(out)
    return convert


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def size(value: Any) -> int:
    """Bytes from an integer or a string like "512MiB", "2GiB", "1.5GB"."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            number = float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()]
            if number >= 1:
                return int(number)
    raise Invalid('a size: bytes as an integer or a string like "512MiB" or "2GiB"')


def shape(value: Any) -> tuple[int, ...]:
    """A tensor shape: [1, 3, 224, 224] or trtexec's "1x3x224x224"."""
    if isinstance(value, str) and re.fullmatch(r"\d+(x\d+)*", value.strip()):
        return tuple(int(x) for x in value.strip().split("x"))
    if isinstance(value, list) and value and all(
            isinstance(d, int) and not isinstance(d, bool) for d in value):
        if all(d > 0 for d in value):
            return tuple(value)
    raise Invalid('a shape of positive integers: [1, 3, 224, 224] or "1x3x224x224"')


def version_spec(value: Any) -> str:
    """A version range in PEP 440 specifier syntax, e.g. ">=8.6,<11"."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if isinstance(value, str):
        try:
            SpecifierSet(value)
            return value.replace(" ", "")
        except InvalidSpecifier:
            pass
    raise Invalid('a version range like ">=8.6", ">=8.2,<8.3" or "==10.3.*"')


def compute_capability(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}\.\d", value):
        return value
    raise Invalid('a compute capability like "8.6" (a string: 8.7 and 8.70 are not the same)')


def table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise Invalid("a table")
    return value


def simple_version_spec(value: Any) -> str:
    """A version range of comma-separated clauses (>=, <=, >, <, ==, != and ==X.Y.*) that devices
    and build hosts check with the standard library alone."""
    from fleetbuild.remote.buildkey import parse_range

    text = version_spec(value)
    try:
        parse_range(text)
    except ValueError:
        raise Invalid('a version range of >=, <=, >, <, == or != clauses, like ">=10.0,<11"') from None
    return text
