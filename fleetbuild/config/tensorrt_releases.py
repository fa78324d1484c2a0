"""What each TensorRT (and TensorRT-RTX) release can do: opset ceilings, features, RTX targets.

Data lives in targets/_tensorrt.toml; this module answers questions about version ranges.
"""
from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fleetbuild.config.tomlfile import loads_toml

FLAVORS = ("tensorrt", "tensorrt-rtx")


@dataclass(frozen=True)
class FlavorFacts:
    releases: tuple[Version, ...]
    max_opset: tuple[tuple[Version, int], ...]        # (first release, opset), ascending
    features: dict[str, Version]
    compute_capabilities: tuple[str, ...] = ()

    def allowed(self, spec: str) -> list[Version]:
        """Known releases inside a version range (ascending)."""
        spec_set = SpecifierSet(spec)
        return [v for v in self.releases if spec_set.contains(v, prereleases=True)]

    def opset_limit(self, version: Version) -> int | None:
        limit = None
        for first, opset in self.max_opset:
            if version >= first:
                limit = opset
        return limit

    def has_feature(self, feature: str, version: Version) -> bool:
        first = self.features.get(feature)
        return first is None or version >= first


@functools.lru_cache(maxsize=None)
def facts(flavor: str) -> FlavorFacts:
    text = importlib.resources.files("fleetbuild_targets").joinpath("_tensorrt.toml").read_text("utf-8")
    table = loads_toml(text, "_tensorrt.toml")[flavor]
    return FlavorFacts(
        releases=tuple(sorted(Version(v) for v in table["releases"])),
        max_opset=tuple(sorted((Version(k), v) for k, v in table["max_opset"].items())),
        features={k: Version(v) for k, v in table.get("features", {}).items()},
        compute_capabilities=tuple(table.get("compute_capabilities", ())),
    )


def parse_version(text: str) -> Version:
    return Version(text)


@functools.lru_cache(maxsize=4096)
def allowed_releases(flavor: str, spec: str | None) -> tuple[Version, ...]:
    """Known releases of `flavor` in range `spec` (None: all). Cached: targets share few ranges."""
    known = facts(flavor)
    return tuple(known.releases if spec is None else known.allowed(spec))


@functools.lru_cache(maxsize=4096)
def best_opset(flavor: str, spec: str | None) -> tuple[Version, int] | None:
    """(release, opset) of the release in range with the highest opset limit, or None if unknown."""
    known = facts(flavor)
    limits = [(v, known.opset_limit(v)) for v in allowed_releases(flavor, spec)]
    limits = [(v, lim) for v, lim in limits if lim is not None]
    return max(limits, key=lambda item: (item[1], item[0])) if limits else None


def strongly_typed(backend: str, tensorrt_range: str | None) -> bool:
    """TensorRT-RTX always; full TensorRT when every release the target allows is 11.x or newer (a
    range spanning 10 and 11 is decided by the host's version at dispatch)."""
    if backend == "tensorrt-rtx":
        return True
    allowed = allowed_releases("tensorrt", tensorrt_range)
    return bool(allowed) and allowed[0].major >= 11
