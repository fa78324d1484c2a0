"""Build keys: sha256 of a canonical JSON encoding of everything that decides an engine.

The plan-time parts (ONNX bytes, profiles, precision, resolved options, target, calibration data,
plugin libraries) are known before any host is asked; the TensorRT flavor/version and the GPU's
compute capability join from host facts at build time. The implementation lives in
fleetbuild.remote.buildkey so the worker computes the very same keys.
"""
from fleetbuild.remote.buildkey import KEY_SCHEMA, build_key, canonical_json

__all__ = ["KEY_SCHEMA", "build_key", "canonical_json"]
