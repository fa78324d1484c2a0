"""Custom layer libraries in a build: pick each provider's library for this TensorRT, load it the
way its generation registers creators, and check every declared op has one (Python 3.6, stdlib)."""
import os

from ..buildkey import choose_library
from ..errors import BuildFailed, EnvironmentFailure


def load_layers(trt, entries, logger, errors):
    """Load the job's plugin libraries (the spec's "plugins" entries), for each provider the one this
    TensorRT takes, the way its generation registers them (the plugin registry's load_library, or a
    dlopen that runs the library's static registration, then init_libnvinfer_plugins), and check a
    creator is registered for every op the provider declares. Returns the manifest's records.
    `errors()` gives the builder's error lines for a BuildFailed."""
    version = str(trt.__version__)
    providers = []
    for entry in entries:
        if entry["provider"] not in providers:
            providers.append(entry["provider"])
    chosen = []
    for provider in providers:
        offered = [e for e in entries if e["provider"] == provider]
        pick = offered[0] if not offered[0].get("sha256") else choose_library(offered, version)
        if pick is None:
            raise EnvironmentFailure("layers.{} has no library for TensorRT {} (it has {})".format(
                provider, version, ", ".join("{} for {}".format(e["name"], e["tensorrt"]) for e in offered)))
        chosen.append(pick)
    registry = trt.get_plugin_registry() if hasattr(trt, "get_plugin_registry") else None
    for pick in chosen:
        _load_library(trt, registry, pick, errors)
    if chosen and hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")
    creators = set()
    if registry is not None:
        for creator in getattr(registry, "plugin_creator_list", None) or getattr(registry, "all_creators", []):
            creators.add(getattr(creator, "name", ""))
    records = []
    for pick in chosen:
        missing = [op for op in pick["ops"] if op not in creators]
        if missing and registry is not None:
            raise BuildFailed("plugin library {} (layers.{}) registered no creator for {} (registered: {})".format(
                pick["name"], pick["provider"], ", ".join(missing), ", ".join(sorted(creators)) or "none"),
                errors())
        records.append({"provider": pick["provider"], "name": pick["name"], "sha256": pick.get("sha256"),
                        "path": pick["path"], "registration": pick["registration"],
                        "creators": sorted(op for op in pick["ops"] if op in creators)})
    return records


def _load_library(trt, registry, pick, errors):
    path, name = pick["path"], pick["name"]
    if not os.path.exists(path):
        raise EnvironmentFailure("plugin library not found on this host: {}".format(path))
    if pick["registration"] == "load-library":
        if registry is None or not hasattr(registry, "load_library"):
            raise BuildFailed("plugin library {} registers through load_library, which TensorRT {} does not "
                              "have (8.6+)".format(name, trt.__version__))
        if registry.load_library(path) is None:
            import ctypes

            said = ""
            try:                          # the dynamic loader says why in words TensorRT's log may not
                ctypes.CDLL(path)
            except OSError as err:
                said = ": " + str(err).replace(path, name)
            raise BuildFailed("TensorRT could not load plugin library {}{}".format(name, said), errors())
        return
    import ctypes

    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as err:
        raise BuildFailed("plugin library {} does not load: {}".format(name, str(err).replace(path, name)))
