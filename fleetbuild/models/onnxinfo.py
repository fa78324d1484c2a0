"""ONNX inspection: opset, inputs and outputs, custom-domain ops, external data, Q/DQ nodes.

`OnnxInspector.inspect(path)` loads the graph without external weights and caches the result by the
file's sha256 (CACHE/onnx/<sha>.json), so planning a large matrix reads each model once per change.
This module and nodefacts.py (what single nodes say) are the only ones that import `onnx` for inspection.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from fleetbuild.filehash import FileHasher, write_json_atomic
from fleetbuild.models.nodefacts import collect, tensor_dims

CACHE_VERSION = 8                # 6: node_facts; 7: facts of Conv, Slice, ...; 8: facts in subgraphs
NODE_NAMES_PER_OP = 3          # node names kept per op type (for messages)
STANDARD_DOMAINS = ("", "ai.onnx")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class OnnxError(Exception):
    """The file is missing or is not an ONNX model. `code` names the problem class."""

    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[Any, ...]      # int for a fixed dim, str for a named (dynamic) dim, None unknown

    @property
    def dynamic_dims(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if not (isinstance(d, int) and d > 0))


@dataclass(frozen=True)
class ExternalData:
    location: str
    needed_bytes: int | None     # offset + length when the model says, else None


@dataclass(frozen=True)
class OnnxInfo:
    sha256: str
    size: int
    ir_version: int
    opset: int                              # of the default domain
    opsets: tuple[tuple[str, int], ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    custom_ops: tuple[str, ...]             # "domain::OpType", sorted
    op_types: tuple[str, ...]               # standard-domain op types, sorted (subgraphs included)
    op_nodes: tuple[tuple[str, tuple[str, ...]], ...]   # op type (custom: domain::Op) -> the first few node names
    op_since: tuple[tuple[str, int], ...]   # op type -> the opset ONNX introduced it in (0: no such op)
    dtypes: tuple[str, ...]                 # element types of weights and typed tensors ("float16", ...)
    external_data: tuple[ExternalData, ...]
    has_qdq: bool
    node_count: int
    node_facts: tuple[dict, ...] = ()       # what the parser rules need of single nodes (nodefacts.py)

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def nodes_of(self, op_type: str) -> tuple[str, ...]:
        """The first few node names of an op type ('#N' for unnamed nodes, N its position)."""
        return next((names for op, names in self.op_nodes if op == op_type), ())

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "OnnxInfo":
        def tensors(items: list) -> tuple[TensorInfo, ...]:
            return tuple(TensorInfo(t["name"], t["dtype"], tuple(t["shape"])) for t in items)
        return cls(**{**data, "inputs": tensors(data["inputs"]), "outputs": tensors(data["outputs"]),
                      "opsets": tuple(tuple(o) for o in data["opsets"]),
                      "custom_ops": tuple(data["custom_ops"]), "op_types": tuple(data["op_types"]),
                      "op_nodes": tuple((op, tuple(names)) for op, names in data["op_nodes"]),
                      "op_since": tuple((op, since) for op, since in data["op_since"]),
                      "dtypes": tuple(data["dtypes"]), "node_facts": tuple(data.get("node_facts") or ()),
                      "external_data": tuple(ExternalData(**e) for e in data["external_data"])})


class OnnxInspector:
    """Inspects ONNX files, remembering results by content hash (in memory and in `cache_dir`)."""

    def __init__(self, cache_dir: Path | None = None, hasher: FileHasher | None = None) -> None:
        self.cache_root = cache_dir
        self.cache_dir = cache_dir / "onnx" if cache_dir else None
        self.hasher = hasher or FileHasher(cache_dir)
        self._memo: dict[str, OnnxInfo] = {}

    def inspect(self, path: Path) -> OnnxInfo:
        if not path.exists():
            raise OnnxError("onnx-missing", f"ONNX file not found: {path}", "check the model's onnx path")
        if path.is_dir():
            raise OnnxError("onnx-corrupt", f"{path} is a directory, not an ONNX file",
                            "point onnx at the .onnx file")
        digest = self.hasher.sha256(path)
        if digest in self._memo:
            return self._memo[digest]
        info = self._load_cached(digest)
        if info is None:
            info = inspect_file(path, digest)
            if self.cache_dir is not None:
                try:
                    write_json_atomic(self.cache_dir / f"{digest}.json",
                                      {"version": CACHE_VERSION, "info": info.to_json()})
                except OSError:
                    pass
        self._memo[digest] = info
        return info

    def _load_cached(self, digest: str) -> OnnxInfo | None:
        if self.cache_dir is None:
            return None
        try:
            data = json.loads((self.cache_dir / f"{digest}.json").read_text("utf-8"))
            if data.get("version") == CACHE_VERSION:
                return OnnxInfo.from_json(data["info"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None


def inspect_file(path: Path, sha256: str) -> OnnxInfo:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and friends, onnx raises its own
        raise OnnxError("onnx-corrupt", f"{path} is not a valid ONNX model ({_first_line(err)})",
                        "re-export the model; `python -c \"import onnx; onnx.checker.check_model(PATH)\"` "
                        "shows what is wrong") from None
    if not model.HasField("graph") or not model.opset_import or model.ir_version <= 0:
        raise OnnxError("onnx-corrupt", f"{path} is not a valid ONNX model (no graph or opset import)",
                        "re-export the model")
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    opsets = tuple(sorted((o.domain or "", o.version) for o in model.opset_import))
    default_opset = next((v for d, v in opsets if d in STANDARD_DOMAINS), 0)
    functions = {(f.domain, f.name) for f in model.functions}
    custom, ops, has_qdq, count = set(), set(), False, 0
    names: dict[str, list[str]] = {}
    for node in all_nodes(graph):
        count += 1
        domain = node.domain or ""
        key = None
        if domain not in STANDARD_DOMAINS and (domain, node.op_type) not in functions:
            key = f"{domain}::{node.op_type}"
            custom.add(key)
        elif domain in STANDARD_DOMAINS:
            key = node.op_type
            ops.add(node.op_type)
        if key is not None:
            seen = names.setdefault(key, [])
            if len(seen) < NODE_NAMES_PER_OP:
                seen.append(node.name or f"#{count - 1}")
        if node.op_type in QDQ_OPS:
            has_qdq = True
    external = {}
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            fields = {e.key: e.value for e in tensor.external_data}
            location = fields.get("location", "")
            needed = None
            if "length" in fields:
                needed = int(fields.get("offset", 0) or 0) + int(fields["length"])
            previous = external.get(location)
            if previous is None or (needed or 0) > (previous or 0):
                external[location] = needed
    return OnnxInfo(
        sha256=sha256, size=path.stat().st_size, ir_version=model.ir_version, opset=default_opset,
        opsets=opsets,
        inputs=tuple(_tensor(v) for v in graph.input if v.name not in initializers),
        outputs=tuple(_tensor(v) for v in graph.output),
        custom_ops=tuple(sorted(custom)), op_types=tuple(sorted(ops)),
        op_nodes=tuple((op, tuple(names[op])) for op in sorted(names)),
        op_since=tuple((op, _first_opset(op)) for op in sorted(ops)),
        dtypes=_dtypes(model),
        external_data=tuple(ExternalData(k, v) for k, v in sorted(external.items())),
        has_qdq=has_qdq, node_count=count, node_facts=collect(model))


def _dtypes(model: Any) -> tuple[str, ...]:
    import onnx

    graph = model.graph
    found = {t.data_type for t in _all_tensors(model)}
    found |= {v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    for node in all_nodes(graph):
        if node.op_type == "Cast":
            found |= {a.i for a in node.attribute if a.name == "to"}
    return tuple(sorted(onnx.TensorProto.DataType.Name(t).lower() for t in found if t))


def _first_opset(op_type: str) -> int:
    """The opset the standard ONNX domain introduced `op_type` in; 0 when it has no such op."""
    return _standard_ops().get(op_type, 0)


@functools.lru_cache(maxsize=1)
def _standard_ops() -> dict[str, int]:
    import onnx.defs

    first: dict[str, int] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain in STANDARD_DOMAINS:
            first[schema.name] = min(first.get(schema.name, schema.since_version), schema.since_version)
    return first


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def all_nodes(graph: Any) -> Iterator[Any]:
    """Every node of a graph, its subgraphs' (Loop, If, Scan bodies) included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from all_nodes(attr.g)
            for sub in attr.graphs:
                yield from all_nodes(sub)


def all_graphs(graph: Any) -> Iterator[Any]:
    """The graph and every subgraph in it (Loop, If, Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from all_graphs(attr.g)
            for sub in attr.graphs:
                yield from all_graphs(sub)


def _all_tensors(model: Any) -> Iterator[Any]:
    def walk(graph: Any) -> Iterator[Any]:
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                if attr.HasField("g"):
                    yield from walk(attr.g)
                for sub in attr.graphs:
                    yield from walk(sub)
    yield from walk(model.graph)


def _tensor(value: Any) -> TensorInfo:
    import onnx

    kind = value.type.tensor_type
    dtype = onnx.TensorProto.DataType.Name(kind.elem_type).lower() if kind.elem_type else "unknown"
    return TensorInfo(value.name, dtype, tuple(tensor_dims(kind) or ()))


def external_data_path(model_path: Path, location: str) -> Path | None:
    """Where an external-data file lives, or None when its location escapes the model's folder."""
    if os.path.isabs(location) or ".." in Path(location).parts or not location:
        return None
    return model_path.parent / location
