"""Target definitions shipped with fleetbuild (one TOML file per target, plus _tensorrt.toml).

This package holds data only; fleetbuild.targets reads it through importlib.resources.
"""
