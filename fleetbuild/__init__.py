"""fleetbuild: build TensorRT engines for a fleet of GPU targets.

The packages follow the flow (docs/architecture.md): config -> models -> plan -> build (with store
and report) -> devices, commands on top, remote/ (stdlib, on hosts and devices) below everything.
Each imports only the stages below it (import-linter's contracts in pyproject.toml).
"""

__version__ = "0.1.0"
