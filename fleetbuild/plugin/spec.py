"""Hook specifications. Each hook's contract is its docstring, repeated in docs/plugins.md.

Core code never calls these directly: it goes through fleetbuild.plugin.manager.Plugins.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from fleetbuild.plugin import hookspec

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from fleetbuild.plan.layers import LayerProvider
    from fleetbuild.plan.problems import JobContext, Problem
    from fleetbuild.config.fleet import FleetConfig
    from fleetbuild.report.events import Reporter
    from fleetbuild.store.api import ArtifactStore
    from fleetbuild.config.targets import Target


@hookspec
def fleetbuild_targets() -> Sequence["Target"]:
    """Return targets to register (fleetbuild.config.targets.Target instances).

    Called once per run, in registration order: built-ins first, then entry-point plugins, then
    modules named with -p or [plugins] load. A target whose name is already registered replaces
    the earlier one; fleet.toml's [targets.NAME] tables are applied after all plugins.
    """


@hookspec(firstresult=True)
def fleetbuild_store(url: str, options: Mapping[str, Any], root: "Path", source: str,
                     env: Mapping[str, str]) -> "ArtifactStore | None":
    """Return an ArtifactStore for `url` if this plugin handles its scheme, else None.

    `options` are the other keys of fleet.toml's [store] table (validate them and raise
    fleetbuild.errors.ConfigError for unknown ones, naming `source`, the file the table came
    from); `root` is that file's directory, for relative paths; `env` is the environment to read credentials from. The first non-None result
    wins, and plugins registered later are asked first, so a plugin can take over a scheme.
    """


@hookspec
def fleetbuild_layer_providers(config: "FleetConfig") -> Sequence["LayerProvider"]:
    """Return custom layer providers: plugin libraries and the ONNX ops they implement.

    Models opt in with `layers = ["NAME"]`. A provider name defined twice is an error. The
    built-in plugin returns fleet.toml's [layers.*] tables.
    """


@hookspec
def fleetbuild_check_job(ctx: "JobContext") -> Sequence["Problem"]:
    """Return compatibility problems for one planned job (an empty list when it is fine).

    Called for every selected job at plan time; must be pure and fast (it runs 10,000 times for a
    large matrix). `ctx.onnx` is None when the model could not be inspected. Problems with
    severity "error" make the job invalid; "warning" ones are shown only.
    """


@hookspec
def fleetbuild_before_build(job: Any, host: str) -> None:
    """Called on the controller just before a job is dispatched to `host`.

    Raising fleetbuild.errors.FleetbuildError fails that job with the error's message as reason;
    other exceptions are plugin errors and abort the run.
    """


@hookspec
def fleetbuild_after_build(job: Any, result: Any) -> None:
    """Called on the controller after each job finished (built, cached or failed).

    `result` is the job's JobResult record. Return value ignored; must not raise.
    """


@hookspec
def fleetbuild_after_publish(release: Mapping[str, Any]) -> None:
    """Called after a release index was written; `release` is the index as written (read only)."""


@hookspec
def fleetbuild_reporter(config: "FleetConfig | None", output: Any) -> "Reporter | None":
    """Return a Reporter that receives plan and build events, or None.

    `output` is the run's OutputOptions (json destination, console, whether stdout is a terminal).
    All returned reporters are called, in registration order; the built-in terminal reporter
    prints the tables and JSON.
    """
