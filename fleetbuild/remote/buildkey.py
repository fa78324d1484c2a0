"""Build keys: sha256 of a canonical JSON encoding of everything that decides an engine.

One implementation for the controller (plan keys) and the worker (full keys, with the TensorRT
flavor/version and compute capability of the host that built the engine).
"""
import hashlib
import json

KEY_SCHEMA = 1


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def build_key(parts, tensorrt=None):
    """The key of plan `parts`; with `tensorrt` ({flavor, version, compute_capability}) the full key."""
    document = {"schema": KEY_SCHEMA, "plan": dict(parts)}
    if tensorrt is not None:
        document["tensorrt"] = dict(tensorrt)
    return hashlib.sha256(canonical_json(document)).hexdigest()
