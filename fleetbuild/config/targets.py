"""Targets: the kinds of GPU an engine is built for, as data.

Shipped targets come from targets/*.toml (registered by the built-in plugin), plugins add more
through the `fleetbuild_targets` hook, and fleet.toml's [targets.NAME] tables override fields of
an existing target or define a new one. Later sources win over earlier ones, field by field.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from fleetbuild.config import schema
from fleetbuild.errors import ConfigError
from fleetbuild.config.options import BACKENDS, PRECISIONS
from fleetbuild.config.tensorrt_releases import facts
from fleetbuild.config.tomlfile import load_toml

PLATFORMS = ("datacenter", "jetson", "rtx")
ARCHES = ("x86_64", "aarch64")


@dataclass(frozen=True)
class JetPackRelease:
    jetpack: str
    l4t: str          # L4T release prefix, matched against /etc/nv_tegra_release ("36.4" matches 36.4.3)
    ubuntu: str
    cuda: str
    tensorrt: str
    python: str


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    platform: str
    arch: str
    compute_capability: str
    gpu_match: tuple[str, ...]
    precisions: tuple[str, ...]
    dla_cores: int
    tensorrt: str                       # PEP 440 range of full TensorRT versions allowed
    inventory_group: str
    backends: tuple[str, ...]
    boards: tuple[str, ...] = ()
    jetpack: tuple[JetPackRelease, ...] = ()
    source: str = ""

    @property
    def cc(self) -> tuple[int, int]:
        major, minor = self.compute_capability.split(".")
        return int(major), int(minor)

    def summary(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["jetpack"] = [dataclasses.asdict(j) for j in self.jetpack]
        return data


_JETPACK_FIELDS = tuple(f.name for f in dataclasses.fields(JetPackRelease))


def _jetpack_release(value: Any) -> JetPackRelease:
    if not isinstance(value, dict) or set(value) != set(_JETPACK_FIELDS) or not all(
            isinstance(v, str) for v in value.values()):
        raise schema.Invalid("an array of tables with string keys " + ", ".join(_JETPACK_FIELDS))
    return JetPackRelease(**value)


_CONVERTERS: Mapping[str, schema.Converter] = {
    "description": schema.string,
    "platform": schema.one_of(*PLATFORMS),
    "arch": schema.one_of(*ARCHES),
    "compute_capability": schema.compute_capability,
    "gpu_match": schema.array_of(schema.nonempty_string, "name patterns", nonempty=True),
    "boards": schema.array_of(schema.nonempty_string, "board patterns"),
    "precisions": schema.array_of(schema.one_of(*PRECISIONS), "precisions", nonempty=True),
    "dla_cores": schema.integer(0, 8),
    "tensorrt": schema.version_spec,
    "inventory_group": schema.name,
    "backends": schema.array_of(schema.one_of(*BACKENDS), "backends", nonempty=True),
    "jetpack": schema.array_of(_jetpack_release, "JetPack releases"),
}
_REQUIRED = ("platform", "arch", "compute_capability", "gpu_match", "precisions")


def read_target(name: str, reader: schema.Reader, base: Target | None, source: str) -> Target:
    """A Target from a TOML table; with `base`, the table only overrides base's fields."""
    values: dict[str, Any] = dataclasses.asdict(base) if base else {}
    if base:
        values["jetpack"] = base.jetpack
    for key, convert in _CONVERTERS.items():
        if reader.has(key):
            values[key] = reader.take(key, convert)
        elif base is None and key in _REQUIRED:
            reader.take(key, convert)  # raises "required key is missing"
    reader.finish()
    if base is None:
        values.setdefault("description", "")
        values.setdefault("dla_cores", 0)
        values.setdefault("tensorrt", ">=8.0")
        values.setdefault("boards", ())
        values.setdefault("jetpack", ())
        values.setdefault("backends", _default_backends(values))
    values.setdefault("inventory_group", name)
    if base is not None and base.inventory_group == base.name and not reader.has("inventory_group"):
        values["inventory_group"] = name
    target = Target(**{**values, "name": name, "source": source})
    _check_target(target, reader)
    return target


def _default_backends(values: Mapping[str, Any]) -> tuple[str, ...]:
    rtx = values["platform"] != "jetson" and values["compute_capability"] in facts(
        "tensorrt-rtx").compute_capabilities
    return ("tensorrt", "tensorrt-rtx") if rtx else ("tensorrt",)


def _check_target(target: Target, reader: schema.Reader) -> None:
    rtx_ccs = facts("tensorrt-rtx").compute_capabilities
    if "tensorrt-rtx" in target.backends and target.compute_capability not in rtx_ccs:
        raise ConfigError(reader.file, reader.key("backends"),
                          f"tensorrt-rtx cannot build for compute capability {target.compute_capability}",
                          "it targets " + ", ".join(rtx_ccs) + "; remove 'tensorrt-rtx'")
    if "tensorrt" in target.backends and not facts("tensorrt").allowed(target.tensorrt):
        raise ConfigError(reader.file, reader.key("tensorrt"),
                          f"range '{target.tensorrt}' allows no known TensorRT release",
                          f"newest known: {facts('tensorrt').releases[-1]}; add newer releases to "
                          "targets/_tensorrt.toml")
    if target.platform == "jetson" and target.arch != "aarch64":
        raise ConfigError(reader.file, reader.key("arch"), "Jetson targets are aarch64")


def shipped_targets() -> list[Target]:
    """The targets in targets/*.toml (files starting with '_' hold shared facts, not targets)."""
    root = importlib.resources.files("fleetbuild_targets")
    out = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml") and not entry.name.startswith("_"):
            with importlib.resources.as_file(entry) as path:
                out.append(load_target_file(Path(path), f"targets/{entry.name}"))
    return out


def load_target_file(path: Path, shown_as: str | None = None) -> Target:
    shown = shown_as or str(path)
    table = load_toml(path, shown)
    name = path.stem
    schema.Reader(shown, {"name": name}).take("name", schema.name)
    return read_target(name, schema.Reader(shown, table), None, shown)


class TargetRegistry:
    """All known targets by name, in the order they were first defined."""

    def __init__(self, targets: Iterable[Target]) -> None:
        self._targets: dict[str, Target] = {}
        for target in targets:
            self._targets[target.name] = target

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __getitem__(self, name: str) -> Target:
        return self._targets[name]

    def __iter__(self):
        return iter(self._targets.values())

    def __len__(self) -> int:
        return len(self._targets)

    def names(self) -> list[str]:
        return list(self._targets)

    def with_overrides(self, file: object, tables: Mapping[str, Any]) -> "TargetRegistry":
        """Apply fleet.toml's [targets.NAME] tables (override fields, or define new targets)."""
        targets = dict(self._targets)
        for name in _extension_order(file, tables):
            table = tables[name]
            schema.Reader(file, {name: name}, "targets").take(name, schema.name)
            reader = schema.Reader(file, table, schema.join_key("targets", name))
            base = targets.get(name)
            extends = reader.take("extends", schema.string, None)
            if extends is not None:
                if extends not in targets:
                    raise ConfigError(file, reader.key("extends"), f"unknown target '{extends}'",
                                      schema.did_you_mean(extends, targets) or
                                      "see `fleetbuild targets`")
                base = targets[extends]
            targets[name] = read_target(name, reader, base, str(file))
        return TargetRegistry(targets.values())


def _extension_order(file: object, tables: Mapping[str, Any]) -> list[str]:
    """The names of fleet.toml's target tables, each after the table it extends (a table may extend
    one written below it); ConfigError naming the circle when they extend each other."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            circle = path[path.index(name):] + [name]
            raise ConfigError(file, f"targets.{path[-1]}.extends", "targets extend each other in a circle: "
                              + " → ".join(circle), "make one of them extend a shipped target (`fleetbuild targets`)")
        state[name] = "visiting"
        table = tables[name]
        base = table.get("extends") if isinstance(table, Mapping) else None
        if isinstance(base, str) and base in tables and base != name:
            visit(base, path + [name])
        elif base == name:
            raise ConfigError(file, f"targets.{name}.extends", f"target '{name}' extends itself",
                              "name a shipped target (`fleetbuild targets`)")
        state[name] = "done"
        order.append(name)

    for name in tables:
        visit(name, [])
    return order
