"""Kept for plugins written before the stage packages: `fleetbuild.targets.Target`. New code
imports it from fleetbuild.plugin."""
from fleetbuild.config.targets import Target

__all__ = ["Target"]
