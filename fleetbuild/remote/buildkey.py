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
        document["plan"] = resolve_layers(document["plan"], tensorrt.get("version") or "")
        document["tensorrt"] = dict(tensorrt)
    return hashlib.sha256(canonical_json(document)).hexdigest()


# ---- custom layer libraries: which one a host's TensorRT loads --------------------------------

_OPERATORS = (">=", "<=", "==", "!=", ">", "<")


def _numbers(text):
    return tuple(int(part) for part in text.split("."))


def parse_range(text):
    """[(operator, version tuple, wildcard?)] of a range like ">=10.0,<11" or "==8.6.*" (ValueError
    for anything else)."""
    clauses = []
    for clause in str(text).replace(" ", "").split(","):
        operator = next((o for o in _OPERATORS if clause.startswith(o)), None)
        if operator is None:
            raise ValueError("not a version clause: {!r}".format(clause))
        version = clause[len(operator):]
        wildcard = version.endswith(".*") and operator in ("==", "!=")
        clauses.append((operator, _numbers(version[:-2] if wildcard else version), wildcard))
    return clauses


def in_range(version, text):
    """Whether TensorRT `version` ("10.3.0.26") is inside range `text` (missing parts count as 0)."""
    have = _numbers(".".join(p for p in str(version).split(".") if p.isdigit()) or "0")
    for operator, bound, wildcard in parse_range(text):
        if wildcard:
            same = have[:len(bound)] == bound
            if same != (operator == "=="):
                return False
            continue
        width = max(len(have), len(bound))
        a, b = have + (0,) * (width - len(have)), bound + (0,) * (width - len(bound))
        if not {">=": a >= b, "<=": a <= b, "==": a == b, "!=": a != b, ">": a > b, "<": a < b}[operator]:
            return False
    return True


def choose_library(candidates, version):
    """The candidate library (dicts with "tensorrt": range) a host with TensorRT `version` loads, or None."""
    for candidate in candidates:
        if in_range(version, candidate["tensorrt"]):
            return candidate
    return None


def resolve_layers(parts, version):
    """Plan parts with each layer provider's candidates replaced by the one library TensorRT
    `version` loads (its sha256): the key of an engine names the library it was built with."""
    layers = parts.get("layers")
    if not layers:
        return parts
    resolved = []
    for name, what in layers:
        if isinstance(what, list):
            chosen = choose_library(what, version)
            what = {"sha256": chosen["sha256"], "registration": chosen["registration"]} if chosen else None
        resolved.append([name, what])
    return dict(parts, layers=resolved)
