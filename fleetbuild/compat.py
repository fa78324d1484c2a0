"""Kept for plugins written before the stage packages: `fleetbuild.compat.Problem`,
`LayerProvider` and `JobContext`. New code imports them from fleetbuild.plugin."""
from fleetbuild.plan.compat import JobContext, LayerProvider, Problem

__all__ = ["JobContext", "LayerProvider", "Problem"]
