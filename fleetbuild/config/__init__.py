"""What the user asked: fleet.toml read into frozen dataclasses (fleet.py, schema.py, tomlfile.py),
the targets registry and the TensorRT release facts it is checked against, matrix expansion,
--only/--skip selectors, names and build options.

Imports only fleetbuild.errors, fleetbuild.filehash and fleetbuild.remote.
"""
from fleetbuild.config.fleet import LayerLibrary

__all__ = ["LayerLibrary"]
