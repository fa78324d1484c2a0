"""Host facts from the probe, and whether a host can build a job for a target."""
from __future__ import annotations

from typing import Any, Mapping

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from fleetbuild.config.targets import Target


def installs(facts: Mapping[str, Any], flavor: str) -> list[Mapping[str, Any]]:
    return [i for i in facts.get("tensorrt") or [] if i.get("flavor") == flavor and i.get("bindings")]


def hardware_problem(facts: Mapping[str, Any], target: Target) -> str | None:
    """Why this host does not belong to the target's pool at all (e.g. a T4 in the a100 group)."""
    ccs = sorted({g.get("compute_capability") for g in facts.get("gpus") or [] if g.get("compute_capability")})
    if ccs and target.compute_capability not in ccs:
        names = ", ".join(sorted({g.get("name", "?") for g in facts["gpus"]}))
        return f"its GPU ({names}, CC {', '.join(ccs)}) does not match target {target.name} (CC {target.compute_capability})"
    if facts.get("arch") and facts["arch"] != target.arch and target.platform == "jetson":
        return f"it is {facts['arch']}, {target.name} is {target.arch}"
    return None


def job_problem(facts: Mapping[str, Any], target: Target, backend: str) -> str | None:
    """Why this host cannot build a job of `backend` for `target` (None when it can)."""
    if backend == "tensorrt-rtx":
        return None if installs(facts, "tensorrt-rtx") else \
            f"no TensorRT-RTX bindings for {facts.get('python', {}).get('executable', 'its Python')}"
    found = installs(facts, "tensorrt")
    if not found:
        return f"no TensorRT bindings for {facts.get('python', {}).get('executable', 'its Python')}"
    ccs = {g.get("compute_capability") for g in facts.get("gpus") or []}
    if target.compute_capability not in ccs:
        return f"no GPU of compute capability {target.compute_capability}"
    try:
        version = Version(found[0]["version"])
    except InvalidVersion:
        return f"unreadable TensorRT version {found[0]['version']!r}"
    if not SpecifierSet(target.tensorrt).contains(version, prereleases=True):
        return f"TensorRT {version} is outside {target.name}'s range {target.tensorrt}"
    return None


def tensorrt_of(facts: Mapping[str, Any], backend: str) -> str | None:
    flavor = "tensorrt-rtx" if backend == "tensorrt-rtx" else "tensorrt"
    found = installs(facts, flavor)
    return found[0]["version"] if found else None


def layer_problem(facts: Mapping[str, Any], key_parts: Mapping[str, Any] | None, backend: str) -> str | None:
    """Why this host cannot load a custom layer library the job needs: none of the provider's
    libraries for the target was compiled for the host's TensorRT."""
    from fleetbuild.remote.buildkey import choose_library

    version = tensorrt_of(facts, backend) or ""
    for name, what in (key_parts or {}).get("layers") or []:
        if isinstance(what, list) and choose_library(what, version) is None:
            ranges = ", ".join(c["tensorrt"] for c in what) or "none for this target"
            return f"no library of layers.{name} for its TensorRT {version} (they cover {ranges})"
    return None
