"""fleet.toml -> FleetConfig (frozen dataclasses). Every mistake is a one-line ConfigError.

Loading is two steps because plugins can add targets: `read_fleet_toml` parses the file (the CLI
needs [plugins] to build the plugin manager), then `parse_config` checks everything against the
target registry. Relative paths are relative to fleet.toml's directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fleetbuild.config import schema
from fleetbuild.errors import ConfigError
from fleetbuild.config.options import PRECISIONS, BuildOptions, OPTION_NAMES, convert_option, read_options
from fleetbuild.config.targets import TargetRegistry
from fleetbuild.config.tomlfile import load_toml

DIMENSIONS = ("model", "target", "precision", "variant")
TOP_LEVEL = ("project", "defaults", "models", "matrix", "targets", "inventory", "store", "plugins",
             "layers", "signing")


@dataclass(frozen=True)
class Project:
    name: str
    version: str


@dataclass(frozen=True)
class InputProfile:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def static(self) -> bool:
        return self.min == self.opt == self.max


@dataclass(frozen=True)
class Tolerance:
    """How far a converted precision may move the outputs (`matrix accuracy`, `matrix build`)."""

    cosine: float | None = None          # at least this cosine similarity per output
    max_abs: float | None = None         # at most this absolute difference
    mean_rel: float | None = None        # at most this mean relative (L1) error


TOLERANCE_KEYS = ("cosine", "max_abs", "mean_rel")


def tolerance(value: Any) -> Tolerance:
    if not isinstance(value, dict) or not value:
        raise schema.Invalid("a table like { cosine = 0.999 } (keys: " + ", ".join(TOLERANCE_KEYS) + ")")
    for key, number in value.items():
        if key not in TOLERANCE_KEYS:
            raise schema.Invalid(f"a table with keys {', '.join(TOLERANCE_KEYS)}, not '{key}'",
                                 schema.did_you_mean(key, TOLERANCE_KEYS))
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0 or (
                key == "cosine" and not 0 < number <= 1):
            raise schema.Invalid(f"{key}: a number " + ("in (0, 1]" if key == "cosine" else ">= 0"))
    return Tolerance(**{k: float(v) for k, v in value.items()})


@dataclass(frozen=True)
class ModelSpec:
    name: str
    onnx: Path                     # resolved
    onnx_as_written: str
    inputs: Mapping[str, InputProfile]
    precisions: tuple[str, ...]
    calibration: str | None        # glob relative to the config directory
    layers: tuple[str, ...]        # custom layer providers this model uses
    options: BuildOptions
    tolerance: Tolerance | None = None


@dataclass(frozen=True)
class MatrixSpec:
    models: tuple[str, ...]
    targets: tuple[str, ...]
    precisions: tuple[str, ...] | None
    exclude: tuple[Mapping[str, str], ...]
    include: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class StoreConfig:
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerLibrary:
    """One compiled plugin library of a layer provider, on the controller: staged to build hosts by
    content, shipped to devices beside the engines that need it."""

    path: Path
    arch: str                          # x86_64 | aarch64
    tensorrt: str                      # the TensorRT range it was compiled against, e.g. ">=10.0,<11"
    flavor: str = "tensorrt"
    registration: str = "on-load"      # on-load: creators register when the library loads (ctypes);
                                       # load-library: the plugin registry's load_library (TensorRT >= 8.6)


@dataclass(frozen=True)
class LayerSpec:
    """A custom layer provider declared in fleet.toml: the ONNX ops it implements, and either its
    libraries (staged and shipped) or `library`, a path already installed on every build host."""

    name: str
    library: str | None
    ops: tuple[str, ...]
    libraries: tuple[LayerLibrary, ...] = ()


@dataclass(frozen=True)
class SigningConfig:
    key: Path | None = None          # the secret key file ($FLEETBUILD_SIGNING_KEY overrides)
    expires_days: float = 90


@dataclass(frozen=True)
class FleetConfig:
    path: Path                     # resolved
    source: str                    # the path as the user gave it (error messages name this)
    root: Path
    project: Project
    defaults: BuildOptions
    models: Mapping[str, ModelSpec]
    matrix: MatrixSpec
    targets: TargetRegistry
    inventory: Path | None
    store: StoreConfig
    plugin_modules: tuple[str, ...]
    layers: Mapping[str, LayerSpec]
    signing: SigningConfig = SigningConfig()


@dataclass(frozen=True)
class RawConfig:
    path: Path
    shown: str
    data: Mapping[str, Any]

    def plugin_modules(self) -> tuple[str, ...]:
        reader = schema.Reader(self.shown, self.data).sub("plugins")
        modules = reader.take("load", schema.array_of(schema.nonempty_string, "module names"), ())
        reader.finish()
        return modules


def read_fleet_toml(path: Path) -> RawConfig:
    shown = str(path)
    if not path.exists():
        hint = "create one with `fleetbuild init`, or pass -c FILE"
        raise ConfigError(shown, "", f"file not found (resolved to {path.resolve()})", hint)
    return RawConfig(path=path.resolve(), shown=shown, data=load_toml(path, shown))


def parse_config(raw: RawConfig, registry: TargetRegistry) -> FleetConfig:
    file, root = raw.shown, raw.path.parent
    top = schema.Reader(file, raw.data)
    for key in raw.data:
        if key not in TOP_LEVEL:
            raise ConfigError(file, key, "unknown table", schema.did_you_mean(key, TOP_LEVEL))

    if not top.has("project"):
        raise ConfigError(file, "project", "required table is missing",
                          'add [project] with name = "..." and version = "..."')
    project_r = top.sub("project")
    project = Project(project_r.take("name", schema.name),
                      project_r.take("version", schema.version, "0.0.0"))
    project_r.finish()

    defaults_r = top.sub("defaults")
    default_precisions = defaults_r.take(
        "precisions", schema.array_of(schema.one_of(*PRECISIONS), "precisions", nonempty=True), ("fp32",))
    default_tolerance = defaults_r.take("tolerance", tolerance, None)
    defaults = read_options(defaults_r)
    defaults_r.finish(OPTION_NAMES)

    layers = _read_layers(top.sub("layers"), root)
    models = _read_models(top.sub("models"), root, default_precisions, layers, default_tolerance)

    targets = registry.with_overrides(file, dict(top.sub("targets").items()))

    matrix = _read_matrix(top.sub("matrix"), models, targets)

    inventory = None
    inventory_r = top.sub("inventory")
    if inventory_r.has("path"):
        written = inventory_r.take("path", schema.nonempty_string)
        inventory = _existing_path(inventory_r, "path", written, root)
    inventory_r.finish()

    store_r = top.sub("store")
    url = store_r.take("url", schema.nonempty_string, "file://./artifacts")
    store = StoreConfig(url=url, options={k: v for k, v in store_r.items() if k != "url"})

    plugin_modules = raw.plugin_modules()
    signing_r = top.sub("signing")
    key = signing_r.take("key", schema.nonempty_string, None)
    signing = SigningConfig(key=_resolved(signing_r, "key", key, root) if key else None,
                            expires_days=signing_r.take("expires_days", schema.integer(1, 3650), 90))
    signing_r.finish()
    return FleetConfig(path=raw.path, source=file, root=root, project=project, defaults=defaults, models=models,
                       matrix=matrix, targets=targets, inventory=inventory, store=store,
                       plugin_modules=plugin_modules, layers=layers, signing=signing)


def _resolved(reader: schema.Reader, key: str, written: str, root: Path) -> Path:
    """`written` relative to fleet.toml's folder, symlinks resolved; ConfigError for a symlink loop."""
    try:
        return (root / os.path.expanduser(written)).resolve()
    except (RuntimeError, OSError) as err:      # 3.11 raises RuntimeError for a loop, 3.13 OSError (ELOOP)
        raise ConfigError(reader.file, reader.key(key), f"'{written}' cannot be resolved: {err}",
                          "point it at the file itself, not at a loop of symlinks") from None


def _existing_path(reader: schema.Reader, key: str, written: str, root: Path) -> Path:
    path = _resolved(reader, key, written, root)
    if not path.exists():
        raise ConfigError(reader.file, reader.key(key), f"file not found: '{written}' (resolved to {path})")
    return path


def _read_layers(reader: schema.Reader, root: Path) -> dict[str, LayerSpec]:
    from fleetbuild.config.targets import ARCHES

    layers = {}
    for name, _ in reader.items():
        reader.convert(name, name, schema.name)
        sub = schema.Reader(reader.file, reader.table[name], reader.key(name))
        ops = sub.take("ops", schema.array_of(schema.nonempty_string, "op names ('Op' or 'domain::Op')",
                                              nonempty=True))
        library = sub.take("library", schema.nonempty_string, None)
        libraries = []
        for index, entry in enumerate(sub.take("libraries", schema.array_of(schema.table, "library tables",
                                                                            unique=False), ())):
            lib = schema.Reader(reader.file, entry, f"{sub.key('libraries')}[{index}]")
            written = lib.take("path", schema.nonempty_string)
            libraries.append(LayerLibrary(
                path=_existing_path(lib, "path", written, root), arch=lib.take("arch", schema.one_of(*ARCHES)),
                tensorrt=lib.take("tensorrt", schema.simple_version_spec),
                flavor=lib.take("flavor", schema.one_of("tensorrt"), "tensorrt",
                                hint="TensorRT-RTX loads no plugin libraries"),
                registration=lib.take("registration", schema.one_of("on-load", "load-library"), "on-load")))
            lib.finish()
        if (library is None) == (not libraries):
            raise ConfigError(reader.file, reader.key(name),
                              "give either library = \"/path/on/every/host.so\" or [[layers.%s.libraries]] "
                              "tables (path, arch, tensorrt)" % name if library is None else
                              "library and libraries cannot both be given",
                              "libraries are staged to the hosts and shipped to devices; library names a "
                              "file already installed on every host")
        sub.finish()
        layers[name] = LayerSpec(name=name, library=library, ops=ops, libraries=tuple(libraries))
    return layers


_MODEL_KEYS = ("onnx", "inputs", "precisions", "calibration", "layers", "tolerance")


def _read_models(reader: schema.Reader, root: Path, default_precisions: tuple[str, ...],
                 layers: Mapping[str, LayerSpec], default_tolerance: Tolerance | None = None) -> dict[str, ModelSpec]:
    models = {}
    for name, _ in reader.items():
        reader.convert(name, name, schema.name)
        sub = schema.Reader(reader.file, reader.table[name], reader.key(name))
        written = sub.take("onnx", schema.nonempty_string, hint='add onnx = "path/to/model.onnx"')
        inputs = _read_inputs(sub.sub("inputs"))
        precisions = sub.take("precisions", schema.array_of(
            schema.one_of(*PRECISIONS), "precisions", nonempty=True), default_precisions)
        calibration = sub.take("calibration", schema.nonempty_string, None)
        model_layers = sub.take("layers", schema.array_of(schema.name, "layer provider names"), ())
        model_tolerance = sub.take("tolerance", tolerance, default_tolerance)
        options = read_options(sub)
        sub.finish(_MODEL_KEYS + OPTION_NAMES)
        models[name] = ModelSpec(name=name, onnx=_resolved(sub, "onnx", written, root),
                                 onnx_as_written=written, inputs=inputs, precisions=precisions,
                                 calibration=calibration, layers=model_layers, options=options,
                                 tolerance=model_tolerance)
    return models


def _read_inputs(reader: schema.Reader) -> dict[str, InputProfile]:
    inputs = {}
    for tensor, value in reader.items():
        if isinstance(value, dict):
            sub = schema.Reader(reader.file, value, reader.key(tensor))
            lo, opt, hi = (sub.take(k, schema.shape, hint="give min, opt and max shapes")
                           for k in ("min", "opt", "max"))
            sub.finish()
            if not len(lo) == len(opt) == len(hi):
                raise ConfigError(reader.file, reader.key(tensor), "min, opt and max have different ranks "
                                  f"({len(lo)}, {len(opt)}, {len(hi)})")
            bad = [i for i in range(len(lo)) if not lo[i] <= opt[i] <= hi[i]]
            if bad:
                i = bad[0]
                raise ConfigError(reader.file, reader.key(tensor),
                                  f"dimension {i} must satisfy min <= opt <= max, got {lo[i]}, {opt[i]}, {hi[i]}")
            inputs[tensor] = InputProfile(lo, opt, hi)
        else:
            static = reader.convert(tensor, value, _static_or_profile)
            inputs[tensor] = InputProfile(static, static, static)
    return inputs


def _static_or_profile(value: Any) -> tuple[int, ...]:
    try:
        return schema.shape(value)
    except schema.Invalid:
        raise schema.Invalid('a shape like [1, 3, 224, 224] or "1x3x224x224", '
                             'or a table {min = ..., opt = ..., max = ...}') from None


def _read_matrix(reader: schema.Reader, models: Mapping[str, ModelSpec],
                 targets: TargetRegistry) -> MatrixSpec:
    model_names = reader.take("models", schema.array_of(schema.string, "model names", nonempty=True),
                              tuple(models))
    for index, name in enumerate(model_names):
        _check_known(reader, schema.join_key("models", index), "model", name, models,
                     "define it as [models.%s]" % name)
    target_names = reader.take("targets", schema.array_of(schema.string, "target names", nonempty=True),
                               hint='add targets = ["t4", "a100", ...]; `fleetbuild targets` lists them')
    for index, name in enumerate(target_names):
        _check_known(reader, schema.join_key("targets", index), "target", name, targets,
                     "see `fleetbuild targets`, or define it as [targets.%s]" % name)
    precisions = reader.take("precisions", schema.array_of(schema.one_of(*PRECISIONS), "precisions",
                                                            nonempty=True), None)
    exclude = reader.take("exclude", _entries, ())
    include = reader.take("include", _entries, ())
    for index, entry in enumerate(exclude):
        key = schema.join_key("exclude", index)
        for dim, value in entry.items():
            if dim not in DIMENSIONS:
                hint = schema.did_you_mean(dim, DIMENSIONS) or "exclude entries name " + ", ".join(DIMENSIONS)
                raise ConfigError(reader.file, reader.key(schema.join_key(key, dim)), "unknown key", hint)
    checked_include = []
    for index, entry in enumerate(include):
        entry = dict(entry)
        key = schema.join_key("include", index)
        for option, value in entry.items():
            if option not in DIMENSIONS and option not in OPTION_NAMES:
                raise ConfigError(reader.file, reader.key(schema.join_key(key, option)), "unknown key",
                                  schema.did_you_mean(option, DIMENSIONS + OPTION_NAMES))
            if option in OPTION_NAMES:
                entry[option] = reader.convert(schema.join_key(key, option), value,
                                               lambda v, o=option: convert_option(o, v))
        checked_include.append(entry)
    for kind, entries in (("exclude", exclude), ("include", checked_include)):
        for index, entry in enumerate(entries):
            key = schema.join_key(kind, index)
            _check_dimension_values(reader, key, entry, models, targets)
    reader.finish()
    return MatrixSpec(models=model_names, targets=target_names, precisions=precisions,
                      exclude=tuple(exclude), include=tuple(checked_include))


def _entries(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(e, dict) and e for e in value):
        raise schema.Invalid("an array of non-empty tables, like [{ model = \"a\", target = \"nano\" }]")
    return tuple(value)


def _check_dimension_values(reader: schema.Reader, key: str, entry: Mapping[str, Any],
                            models: Mapping[str, ModelSpec], targets: TargetRegistry) -> None:
    for dim in DIMENSIONS:
        if dim not in entry:
            continue
        where = schema.join_key(key, dim)
        value = reader.convert(where, entry[dim], schema.name if dim == "variant" else schema.string)
        if dim == "model":
            _check_known(reader, where, "model", value, models, "define it as [models.%s]" % value)
        elif dim == "target":
            _check_known(reader, where, "target", value, targets, "see `fleetbuild targets`")
        elif dim == "precision":
            reader.convert(where, value, schema.one_of(*PRECISIONS))


def _check_known(reader: schema.Reader, key: str, kind: str, name: str, known: Any, fallback: str) -> None:
    if name not in known:
        names = list(known) if isinstance(known, Mapping) else known.names()
        raise ConfigError(reader.file, reader.key(key), f"unknown {kind} '{name}'",
                          schema.did_you_mean(name, names) or fallback)
