"""Build options: the knobs that decide an engine, settable in [defaults], per model, per matrix cell.

Every option is None until some layer sets it; `BuildOptions.resolved()` fills TensorRT's own
defaults, so an option set to its default and an option left out give the same build key.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from fleetbuild.config import schema

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
BACKENDS = ("tensorrt", "tensorrt-rtx")
HARDWARE_LEVELS = ("none", "ampere_plus", "same_compute_capability")


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    backend: str | None = None
    workspace: int | None = None                 # bytes; None = TensorRT's default (device memory)
    builder_optimization_level: int | None = None
    timing_cache: bool | None = None
    version_compatible: bool | None = None
    exclude_lean_runtime: bool | None = None
    hardware_compatibility_level: str | None = None
    dla_core: int | None = None
    gpu_fallback: bool | None = None
    sparse_weights: bool | None = None
    rename_dynamic_dims: bool | str | None = None   # None / "auto": only names the profile contradicts
    downgrade_opset: bool | None = None          # convert a too-new model to the target's opset (version_converter)

    def merged(self, override: "BuildOptions") -> "BuildOptions":
        """self with every option that `override` sets replaced."""
        changes = {name: value for name in OPTION_NAMES if (value := getattr(override, name)) is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def resolved(self) -> "BuildOptions":
        return DEFAULTS.merged(self)

    def as_dict(self) -> dict[str, Any]:
        """The options that are set (values are plain JSON types)."""
        return {name: value for name in OPTION_NAMES if (value := getattr(self, name)) is not None}


DEFAULTS = BuildOptions(
    backend="tensorrt", builder_optimization_level=3, timing_cache=True, version_compatible=False,
    exclude_lean_runtime=False, hardware_compatibility_level="none", gpu_fallback=False,
    sparse_weights=False,
)

def bool_or_auto(value: Any) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    raise schema.Invalid('true, false or "auto"')


CONVERTERS: Mapping[str, schema.Converter] = {
    "backend": schema.one_of(*BACKENDS),
    "workspace": schema.size,
    "builder_optimization_level": schema.integer(0, 5),
    "timing_cache": schema.boolean,
    "version_compatible": schema.boolean,
    "exclude_lean_runtime": schema.boolean,
    "hardware_compatibility_level": schema.one_of(*HARDWARE_LEVELS),
    "dla_core": schema.integer(0, 7),
    "gpu_fallback": schema.boolean,
    "sparse_weights": schema.boolean,
    "rename_dynamic_dims": bool_or_auto,
    "downgrade_opset": schema.boolean,
}
OPTION_NAMES = tuple(CONVERTERS)
assert set(OPTION_NAMES) == {f.name for f in dataclasses.fields(BuildOptions)}


def read_options(reader: schema.Reader) -> BuildOptions:
    """Take the build options present in `reader`'s table (other keys are left for the caller)."""
    values = {key: reader.take(key, convert) for key, convert in CONVERTERS.items() if reader.has(key)}
    return BuildOptions(**values)


def convert_option(key: str, value: Any) -> Any:
    return CONVERTERS[key](value)
