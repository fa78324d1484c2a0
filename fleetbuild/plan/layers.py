"""Custom layer providers (the ops a plugin implements, its libraries) and, per job, which of a
provider's libraries a target can load and what of them goes into a build key and a worker spec."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from fleetbuild.config.tensorrt_releases import allowed_releases

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.config.fleet import LayerLibrary
    from fleetbuild.config.targets import Target

LOAD_LIBRARY_FIRST = "8.6"      # IPluginRegistry.load_library from this release on


@dataclass(frozen=True)
class LayerProvider:
    """A custom layer provider: the ONNX ops it implements ('Op' or 'domain::Op') and its plugin
    libraries (fleetbuild.config.LayerLibrary: path on the controller, arch, TensorRT range,
    registration), or `library`, a path already installed on every build host."""

    name: str
    ops: tuple[str, ...]
    library: str | None = None
    source: str = ""
    libraries: tuple = ()

    def provides(self, custom_op: str) -> bool:
        op_type = custom_op.split("::", 1)[-1]
        return custom_op in self.ops or op_type in self.ops


def candidates(provider: "LayerProvider", target: "Target", *, arch: bool = True, tensorrt: bool = True,
               registration: bool = True) -> list["LayerLibrary"]:
    """The provider's libraries a host of `target` may load: its CPU arch, full TensorRT, a
    TensorRT range meeting the target's (a known release inside both), and for load_library
    registration a release that has it. Each check can be left out (to say which one failed)."""
    from fleetbuild.remote.buildkey import in_range

    releases = allowed_releases("tensorrt", target.tensorrt)
    found = []
    for library in provider.libraries:
        if (arch and library.arch != target.arch) or library.flavor != "tensorrt":
            continue
        usable = [r for r in releases if in_range(str(r), library.tensorrt)] if tensorrt else list(releases)
        if registration and library.registration == "load-library":
            usable = [r for r in usable if in_range(str(r), ">=" + LOAD_LIBRARY_FIRST)]
        if usable:
            found.append(library)
    return found


def describe(libraries: Sequence["LayerLibrary"]) -> str:
    return ", ".join(f"{lib.path.name} ({lib.arch}, TensorRT {lib.tensorrt}"
                     f"{', load_library' if lib.registration == 'load-library' else ''})" for lib in libraries)


def key_entry(provider: "LayerProvider", target: "Target", hasher: Any) -> Any:
    """What of a provider goes into a job's build-key parts: its host path (a library installed on
    the hosts), or its candidate libraries (sha256, range, registration), resolved to the one a
    host's TensorRT loads when the key is completed (remote/buildkey.resolve_layers)."""
    if not provider.libraries:
        return {"host_library": provider.library}
    return [{"sha256": hasher.sha256(lib.path), "tensorrt": lib.tensorrt, "registration": lib.registration,
             "arch": lib.arch} for lib in candidates(provider, target)]


def spec_entries(providers: Mapping[str, "LayerProvider"], names: Sequence[str], target: "Target",
                 hasher: Any, staged_path: Any) -> list[dict[str, Any]]:
    """The worker spec's "plugins": one entry per candidate library (or host library), with the ops
    it must register. `staged_path(library) -> str` places a library among the job's inputs."""
    entries = []
    for name in names:
        provider = providers.get(name)
        if provider is None:
            continue
        ops = [op.split("::", 1)[-1] for op in provider.ops]
        if not provider.libraries:
            entries.append({"provider": name, "path": provider.library, "sha256": None, "tensorrt": "",
                            "registration": "on-load", "ops": ops, "name": provider.library.rsplit("/", 1)[-1]})
            continue
        for lib in candidates(provider, target):
            entries.append({"provider": name, "path": staged_path(lib), "sha256": hasher.sha256(lib.path),
                            "tensorrt": lib.tensorrt, "registration": lib.registration, "ops": ops,
                            "name": lib.path.name})
    return entries
