"""A fleetbuild layer provider shipped as a package: the ops it implements and its plugin
libraries, one per CPU arch and TensorRT range, inside the package (lib/<arch>-trt<major>/).

Build the libraries with your plugin's own build (CMake against each TensorRT), copy them to
lib/, then `pip install .` next to fleetbuild. Models opt in with `layers = ["acme"]`.
"""
from __future__ import annotations

from pathlib import Path

from fleetbuild.plugin import LayerLibrary, LayerProvider, hookimpl

LIB = Path(__file__).resolve().parent / "lib"

# (folder under lib/, CPU arch, TensorRT range it was compiled against, how it registers)
BUILDS = [
    ("x86_64-trt10", "x86_64", ">=10.0,<11", "load-library"),   # getCreators(): IPluginRegistry.load_library
    ("aarch64-trt10", "aarch64", ">=10.0,<11", "load-library"),  # Jetson Orin, JetPack 6
    ("aarch64-trt8", "aarch64", ">=8.2,<8.7", "on-load"),        # JetPack 4/5: REGISTER_TENSORRT_PLUGIN
]


@hookimpl
def fleetbuild_layer_providers(config):
    libraries = tuple(LayerLibrary(path=LIB / folder / "libacme_layers.so", arch=arch, tensorrt=tensorrt,
                                   registration=registration)
                      for folder, arch, tensorrt, registration in BUILDS
                      if (LIB / folder / "libacme_layers.so").exists())
    return [LayerProvider(name="acme", ops=("acme.layers::FancyAct",), libraries=libraries, source="acme-layers")]
