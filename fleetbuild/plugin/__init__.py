"""fleetbuild's plugin system (pluggy): hook specifications (spec.py), the typed facade core code
calls hooks through (manager.py) and fleetbuild's own behaviour registered as plugins (builtins.py).

A plugin author imports everything from here: `hookimpl` and the types the hooks take and return.
The package may import report, plan, models, store, config and the shared leaves; never build,
devices or commands.
"""
import pluggy

hookimpl = pluggy.HookimplMarker("fleetbuild")
hookspec = pluggy.HookspecMarker("fleetbuild")

from fleetbuild.config.fleet import LayerLibrary  # noqa: E402  (the markers first: spec.py imports them)
from fleetbuild.config.targets import Target  # noqa: E402
from fleetbuild.plan.layers import LayerProvider  # noqa: E402
from fleetbuild.plan.problems import JobContext, Problem  # noqa: E402
from fleetbuild.report.events import OutputOptions, Reporter  # noqa: E402
from fleetbuild.report.results import JobResult, RunSummary  # noqa: E402
from fleetbuild.store.api import ArtifactStore  # noqa: E402

__all__ = ["ArtifactStore", "JobContext", "JobResult", "LayerLibrary", "LayerProvider", "OutputOptions", "Problem",
           "Reporter", "RunSummary", "Target", "hookimpl", "hookspec"]
