"""The typed facade over pluggy: the only place core code calls hooks from.

A fresh Plugins object per CLI run (tests call main() many times in one process). Built-ins are
registered first, through the same hooks as everyone else, then entry-point plugins (group
"fleetbuild", unless disabled), then explicitly named modules.
"""
from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pluggy

from fleetbuild.errors import ConfigError, FleetbuildError, PluginError
from fleetbuild.plugin import spec

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.plan.layers import LayerProvider
    from fleetbuild.plan.problems import Problem
    from fleetbuild.report.events import Reporter
    from fleetbuild.store.api import ArtifactStore
    from fleetbuild.config.targets import TargetRegistry

ENTRY_POINT_GROUP = "fleetbuild"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    kind: str           # builtin | entry-point | module | object
    origin: str         # module or distribution it comes from
    hooks: tuple[str, ...]


class Plugins:
    def __init__(self, *, entry_points: bool = True, modules: Sequence[str] = (),
                 objects: Sequence[object] = (), blocked: Sequence[str] = ()) -> None:
        from fleetbuild.plugin import builtins

        self._pm = pluggy.PluginManager("fleetbuild")
        self._pm.add_hookspecs(spec)
        self._kinds: dict[str, tuple[str, str]] = {}
        for name in blocked:
            self._pm.set_blocked(name)
        for name, plugin in builtins.BUILTINS:
            self._register(plugin, name, "builtin", "fleetbuild")
        if entry_points:
            self._load_entry_points()
        for module in modules:
            self.load_module(module)
        for plugin in objects:
            name = f"{type(plugin).__module__}.{type(plugin).__qualname__}"
            if self._pm.get_plugin(name) is not None:
                name += f"#{id(plugin):x}"
            self._register(plugin, name, "object", type(plugin).__module__)

    # ---- registration -------------------------------------------------------------------------
    def _register(self, plugin: object, name: str | None, kind: str, origin: str) -> None:
        if name is not None and self._pm.is_blocked(name):
            return
        try:
            registered = self._pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as err:
            raise PluginError(f"plugin {name or plugin!r} from {origin}: {err}") from None
        if registered is not None:
            self._kinds[registered] = (kind, origin)

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if self._pm.is_blocked(ep.name) or self._pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as err:
                dist = ep.dist.name if ep.dist else "?"
                raise PluginError(f"plugin '{ep.name}' (entry point of {dist}) failed to import: "
                                  f"{type(err).__name__}: {err} (disable entry-point plugins with "
                                  "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD=1 or block it with -p no:"
                                  f"{ep.name})") from err
            self._register(plugin, ep.name, "entry-point", ep.dist.name if ep.dist else ep.value)

    def load_module(self, module: str) -> None:
        if self._pm.is_blocked(module) or self._pm.get_plugin(module) is not None:
            return
        try:
            plugin = importlib.import_module(module)
        except ImportError as err:
            raise PluginError(f"plugin module '{module}' could not be imported: {err}") from err
        self._register(plugin, module, "module", module)

    def listing(self) -> list[PluginInfo]:
        out = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:
                continue
            kind, origin = self._kinds.get(name, ("object", ""))
            hooks = tuple(sorted(h.name for h in self._pm.get_hookcallers(plugin) or ()))
            out.append(PluginInfo(name, kind, origin, hooks))
        return out

    # ---- the facade ---------------------------------------------------------------------------
    def _each(self, hook_name: str, **kwargs: Any) -> Iterable[tuple[str, Any]]:
        """(plugin name, result) per implementation, in registration order."""
        caller = getattr(self._pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            try:
                result = impl.function(**{k: kwargs[k] for k in impl.argnames})
            except FleetbuildError:
                raise
            except Exception as err:
                raise PluginError(f"plugin '{impl.plugin_name}' failed in {hook_name}: "
                                  f"{type(err).__name__}: {err} (--debug shows the traceback)") from err
            yield impl.plugin_name, result

    def targets(self) -> "TargetRegistry":
        from fleetbuild.config.targets import Target, TargetRegistry

        collected: list[Target] = []
        for plugin, result in self._each("fleetbuild_targets"):
            for target in result or ():
                if not isinstance(target, Target):
                    raise PluginError(f"plugin '{plugin}': fleetbuild_targets returned "
                                      f"{type(target).__name__}, expected fleetbuild.targets.Target")
                if not target.source:
                    target = _with_source(target, f"plugin {plugin}")
                collected.append(target)
        return TargetRegistry(collected)

    def store_for(self, url: str, options: Mapping[str, Any], root: Path, source: str,
                  env: Mapping[str, str]) -> "ArtifactStore":
        try:
            store = self._pm.hook.fleetbuild_store(url=url, options=options, root=root, source=source,
                                                   env=env)
        except FleetbuildError:
            raise
        except Exception as err:
            raise PluginError(f"store plugin failed for '{url}': {type(err).__name__}: {err}") from err
        if store is None:
            scheme = url.split("://", 1)[0] if "://" in url else url
            hint = ("install fleetbuild[s3], or load the plugin with -p fleetbuild_plugins.s3 when entry-point "
                    "plugins are disabled") if scheme == "s3" else "use file://PATH or a store plugin"
            raise ConfigError(source, "store.url", f"no store plugin handles '{scheme}://' URLs", hint)
        return store

    def layer_providers(self, config: Any) -> dict[str, "LayerProvider"]:
        from fleetbuild.plan.layers import LayerProvider

        providers: dict[str, LayerProvider] = {}
        for plugin, result in self._each("fleetbuild_layer_providers", config=config):
            for provider in result or ():
                if not isinstance(provider, LayerProvider):
                    raise PluginError(f"plugin '{plugin}': fleetbuild_layer_providers returned "
                                      f"{type(provider).__name__}, expected fleetbuild.compat.LayerProvider")
                if provider.name in providers:
                    raise ConfigError("fleet.toml", f"layers.{provider.name}",
                                      f"layer provider '{provider.name}' is defined twice "
                                      f"({providers[provider.name].source} and {provider.source or plugin})",
                                      "rename one of them")
                providers[provider.name] = provider
        return providers

    def check_job(self, ctx: Any) -> list["Problem"]:
        from fleetbuild.plan.problems import Problem

        problems: list[Problem] = []
        for plugin, result in self._each("fleetbuild_check_job", ctx=ctx):
            for problem in result or ():
                if not isinstance(problem, Problem):
                    raise PluginError(f"plugin '{plugin}': fleetbuild_check_job returned "
                                      f"{type(problem).__name__}, expected fleetbuild.compat.Problem")
                problems.append(problem)
        return problems

    def before_build(self, job: Any, host: str) -> None:
        for _ in self._each("fleetbuild_before_build", job=job, host=host):
            pass

    def after_build(self, job: Any, result: Any) -> None:
        for _ in self._each("fleetbuild_after_build", job=job, result=result):
            pass

    def after_publish(self, release: Mapping[str, Any]) -> None:
        for _ in self._each("fleetbuild_after_publish", release=release):
            pass

    def reporters(self, config: Any, output: Any) -> list["Reporter"]:
        return [r for _, r in self._each("fleetbuild_reporter", config=config, output=output) if r is not None]


def _with_source(target: Any, source: str) -> Any:
    import dataclasses

    return dataclasses.replace(target, source=source)

