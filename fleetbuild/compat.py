"""Kept for plugins written before the stage packages: `fleetbuild.compat.Problem`,
`LayerProvider` and `JobContext`. New code imports them from fleetbuild.plugin."""
from fleetbuild.plan.layers import LayerProvider
from fleetbuild.plan.problems import JobContext, Problem

__all__ = ["JobContext", "LayerProvider", "Problem"]
