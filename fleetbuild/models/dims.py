"""Symbolic input dimensions that share a name.

TensorRT treats input dimensions with one symbolic name as one dimension: an input [-1, 3, ?, ?]
(some exporters name every unknown dimension '?') with a profile of H=48, W=192 fails to build with
"Input dimensions with this name have different constant values or have contradictory
IOptimizationProfile kMIN/kMAX constraints". Renaming the dims before parsing fixes it without
touching the model's computation. `rename_dynamic_dims`: "auto" (default) renames only names the
profile contradicts, true renames every named input dimension, false renames nothing (and the plan
refuses the contradiction).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from fleetbuild.models.onnxinfo import OnnxInfo


@dataclass(frozen=True)
class DimUse:
    input: str
    index: int
    extent: tuple[int, int, int]           # min, opt, max from the profile

    def text(self) -> str:
        low, opt, high = self.extent
        return f"{self.input}[{self.index}] = {low}" + ("" if low == opt == high else f"/{opt}/{high}")


@dataclass(frozen=True)
class Rename:
    input: str
    index: int
    old: str
    new: str

    def text(self) -> str:
        return f"{self.input}[{self.index}] '{self.old}' -> '{self.new}'"


def shared_dims(info: OnnxInfo, profiles: Mapping[str, Any]) -> dict[str, list[DimUse]]:
    """Named input dims used more than once, with the extents the profiles give them."""
    groups: dict[str, list[DimUse]] = {}
    for tensor in info.inputs:
        profile = profiles.get(tensor.name)
        if profile is None or len(profile.min) != len(tensor.shape):
            continue
        for index, dim in enumerate(tensor.shape):
            if isinstance(dim, str) and dim:
                extent = (profile.min[index], profile.opt[index], profile.max[index])
                groups.setdefault(dim, []).append(DimUse(tensor.name, index, extent))
    return {name: uses for name, uses in groups.items() if len(uses) > 1}


def contradictions(info: OnnxInfo, profiles: Mapping[str, Any]) -> dict[str, list[DimUse]]:
    """Shared names whose uses the profiles give different extents: what TensorRT refuses."""
    return {name: uses for name, uses in shared_dims(info, profiles).items()
            if len({use.extent for use in uses}) > 1}


def renames(info: OnnxInfo, profiles: Mapping[str, Any], mode: bool | str | None) -> tuple[Rename, ...]:
    """The input dims to give unique names before parsing, for `rename_dynamic_dims` = mode."""
    if mode is False:
        return ()
    if mode is True:
        targets = {(t.name, i): d for t in info.inputs for i, d in enumerate(t.shape) if isinstance(d, str) and d}
    else:
        targets = {(use.input, use.index): name for name, uses in contradictions(info, profiles).items()
                   for use in uses}
    taken = {d for t in info.inputs for d in t.shape if isinstance(d, str)}
    out = []
    for (tensor, index), old in sorted(targets.items(), key=lambda item: _position(info, item[0])):
        new = f"{tensor}_dim{index}"
        while new in taken:
            new += "_"
        taken.add(new)
        out.append(Rename(tensor, index, old, new))
    return tuple(out)


def _position(info: OnnxInfo, key: tuple[str, int]) -> tuple[int, int]:
    names = [t.name for t in info.inputs]
    return names.index(key[0]) if key[0] in names else len(names), key[1]
