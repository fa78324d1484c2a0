"""fleetbuild's own behaviour, registered through the same hooks as third-party plugins.

Each built-in is a named plugin, so `-p no:NAME` can switch one off (say, to replace the
terminal reporter or the file:// store with your own).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fleetbuild.plugin import hookimpl


class ShippedTargets:
    @hookimpl
    def fleetbuild_targets(self) -> list:
        from fleetbuild.config.targets import shipped_targets

        return shipped_targets()


class LocalStorePlugin:
    @hookimpl(trylast=True)
    def fleetbuild_store(self, url: str, options: Mapping[str, Any], root: Path, source: str):
        from fleetbuild.store.local import local_store

        return local_store(url, dict(options), root, source)


class ConfigLayers:
    @hookimpl
    def fleetbuild_layer_providers(self, config: Any) -> list:
        from fleetbuild.plan.layers import LayerProvider

        if config is None:
            return []
        return [LayerProvider(name=spec.name, ops=spec.ops, library=spec.library, source=config.source,
                              libraries=spec.libraries)
                for spec in config.layers.values()]


class CompatRules:
    @hookimpl
    def fleetbuild_check_job(self, ctx: Any) -> list:
        from fleetbuild.plan.rules import run_rules

        return run_rules(ctx)


class TerminalOutput:
    @hookimpl
    def fleetbuild_reporter(self, output: Any):
        from fleetbuild.report.terminal import TerminalReporter

        return TerminalReporter(output)


class JsonOutput:
    @hookimpl
    def fleetbuild_reporter(self, output: Any):
        from fleetbuild.report.json_output import JsonReporter

        return JsonReporter(output) if output.json is not None else None


class GithubOutput:
    @hookimpl
    def fleetbuild_reporter(self, config: Any, output: Any):
        if not output.github:
            return None
        from fleetbuild.report.github import GithubReporter

        return GithubReporter(output, config)


class HtmlOutput:
    @hookimpl
    def fleetbuild_reporter(self, output: Any):
        if not output.report:
            return None
        from fleetbuild.report.html_page import HtmlReporter

        return HtmlReporter(output)


BUILTINS = (
    ("builtin-targets", ShippedTargets()),
    ("builtin-local-store", LocalStorePlugin()),
    ("builtin-layers", ConfigLayers()),
    ("builtin-compat", CompatRules()),
    ("builtin-github", GithubOutput()),     # before the terminal: its masks precede the lines they hide
    ("builtin-terminal", TerminalOutput()),
    ("builtin-json", JsonOutput()),
    ("builtin-html", HtmlOutput()),
)
