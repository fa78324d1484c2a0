"""--only / --skip: fnmatch patterns over job ids, with shell-style {a,b} alternatives."""
from __future__ import annotations

import fnmatch
import re
from typing import Callable, Iterable, Sequence, TypeVar

from fleetbuild.errors import UsageError

T = TypeVar("T")


def expand_braces(pattern: str) -> list[str]:
    """'a/{t4,a100}/*' -> ['a/t4/*', 'a/a100/*']; nested braces work; unbalanced ones are an error."""
    depth, start = 0, -1
    for index, char in enumerate(pattern):
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise UsageError(f"selector '{pattern}': '}}' without a matching '{{'")
            if depth == 0:
                head, body, tail = pattern[:start], pattern[start + 1:index], pattern[index + 1:]
                options = [x for part in _split_top(body) for x in expand_braces(part)]
                return [head + option + rest for option in options for rest in expand_braces(tail)]
    if depth:
        raise UsageError(f"selector '{pattern}': '{{' without a matching '}}'")
    return [pattern]


def _split_top(body: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in body:
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += char == "{"
        depth -= char == "}"
        current += char
    parts.append(current)
    return parts


def _components(job_id: str) -> list[str]:
    """'m/t/fp16+dla' -> ['m', 't', 'fp16+dla', 'fp16', 'dla']."""
    parts = job_id.split("/")
    last = parts[-1]
    return parts + (last.split("+", 1) if "+" in last else [])


class Selector:
    """Compiled --only/--skip patterns. A pattern with '/' matches whole job ids ('*' crosses '/');
    one without '/' matches any single component: a model, target, precision or variant."""

    def __init__(self, only: Sequence[str] = (), skip: Sequence[str] = ()) -> None:
        self.only = [(p, self._compile(p)) for p in only]
        self.skip = [(p, self._compile(p)) for p in skip]

    @staticmethod
    def _compile(pattern: str) -> list[tuple[bool, re.Pattern[str]]]:
        if not pattern.strip():
            raise UsageError("empty selector: give a job id pattern like 'resnet/*/fp16'")
        return [("/" in alt, re.compile(fnmatch.translate(alt))) for alt in expand_braces(pattern.strip())]

    @staticmethod
    def _matches(compiled: list[tuple[bool, re.Pattern[str]]], job_id: str) -> bool:
        for whole, rx in compiled:
            if whole and rx.match(job_id):
                return True
            if not whole and any(rx.match(part) for part in _components(job_id)):
                return True
        return False

    def selects(self, job_id: str) -> bool:
        if self.only and not any(self._matches(c, job_id) for _, c in self.only):
            return False
        return not any(self._matches(c, job_id) for _, c in self.skip)

    def apply(self, items: Iterable[T], key: Callable[[T], str]) -> list[T]:
        """The selected items; a pattern that matches no job at all is a usage error."""
        items = list(items)
        ids = [key(item) for item in items]
        for flag, patterns in (("--only", self.only), ("--skip", self.skip)):
            for text, compiled in patterns:
                if not any(self._matches(compiled, i) for i in ids):
                    example = ids[0] if ids else "model/target/precision"
                    raise UsageError(f"{flag} '{text}' matches no job (ids look like '{example}'; "
                                     "`fleetbuild matrix plan` lists them)")
        return [item for item, i in zip(items, ids) if self.selects(i)]
