"""Build keys: sha256 of a canonical JSON encoding of everything that decides an engine.

The plan-time parts (ONNX bytes, profiles, precision, resolved options, target, calibration data,
plugin libraries) are known before any host is asked; the TensorRT flavor/version and the GPU's
compute capability join from host facts at build time. Same parts -> same key, on any machine.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

KEY_SCHEMA = 1


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def build_key(parts: Mapping[str, Any], tensorrt: Mapping[str, str] | None = None) -> str:
    """The key of `parts`; with `tensorrt` ({flavor, version, compute_capability}) the full key."""
    document = {"schema": KEY_SCHEMA, "plan": dict(parts)}
    if tensorrt is not None:
        document["tensorrt"] = dict(tensorrt)
    return hashlib.sha256(canonical_json(document)).hexdigest()
