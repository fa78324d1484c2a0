"""Opset down-conversion with onnx.version_converter, for a target whose TensorRT parses only older
opsets (TensorRT 8.2 on the Jetson Nano stops at 13). Opt-in (`downgrade_opset = true`): the
converter rewrites ops whose signature changed (ReduceSum's axes input back to an attribute, ...)
and refuses ops that have no older version (LayerNormalization before 17): that refusal is the
job's conversion error, naming the op."""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from fleetbuild.errors import ConversionError
from fleetbuild.models.onnxinfo import all_nodes

_NO_PREVIOUS = re.compile(r"No Previous Version of (\w+) exists")
_NO_ADAPTER = re.compile(r"No Adapter (?:From|To) Version \$?(\d+) for (\w+)")


def downgrade(source: Path, dest: Path, opset: int, label: str = "") -> list[str]:
    """Write `source` converted to `opset` at `dest`; returns the notes saying so.

    One opset at a time: onnx.version_converter where it has the adapters; where it has none for an
    op whose newer version only added types or optional attributes and inputs (Add, Relu, Reshape
    at 14, ...: the converter ships few downward adapters), the step relabels the model's opset and
    onnx.checker and strict type inference must accept every node under the older schema,
    or the conversion fails naming the op."""
    import onnx
    from onnx import version_converter

    label = label or source.name
    model = onnx.load(str(source))
    current = _default_opset(model)
    if current is None or current <= opset:
        onnx.save(model, str(dest))
        return []
    relabelled: list[str] = []
    for version in range(current, opset, -1):
        try:
            model = version_converter.convert_version(model, version - 1)
            continue
        except Exception as err:
            missing = _NO_ADAPTER.search(str(err))
            if missing is None:
                no_older = _NO_PREVIOUS.search(str(err))
                if no_older:
                    raise ConversionError(f"opset {current} -> {opset} of {label}: {no_older.group(1)} has no "
                                          f"version before opset {version} (onnx.version_converter)") from err
                raise ConversionError(f"opset {current} -> {opset} of {label} failed at {version}: {_last(err)}") from err
        model = _relabel(model, version - 1, label, current, opset)
        relabelled.append(str(version))
    onnx.save(model, str(dest))
    how = f" (ops changed at opset {', '.join(relabelled)} checked against the older schema)" if relabelled else ""
    return [f"opset: converted from {current} to {opset} with onnx.version_converter{how}"]


def _relabel(model: Any, version: int, label: str, current: int, opset: int) -> Any:
    import onnx

    relabelled = onnx.ModelProto()
    relabelled.CopyFrom(model)
    _drop_default_attributes(relabelled.graph, version)
    for entry in relabelled.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = version
    try:
        _check_nodes(relabelled, version)
        onnx.shape_inference.infer_shapes(relabelled, strict_mode=True)
    except Exception as err:
        newer = _ops_newer_than(model.graph, version)
        if newer:
            op, since = newer[0]
            raise ConversionError(f"opset {current} -> {opset} of {label}: {op} has no version before opset "
                                  f"{since}") from err
        raise ConversionError(f"opset {current} -> {opset} of {label}: at opset {version} {_last(err)}") from err
    return relabelled


def _check_nodes(model: Any, version: int) -> None:
    """Every node (subgraphs too) against the schema of `version` (onnx.checker's check_node; a node
    holding subgraphs is checked through its subgraphs' nodes, which check_node alone cannot scope)."""
    from onnx import checker

    context = checker.C.CheckerContext()
    context.ir_version = model.ir_version
    context.opset_imports = {"": version}

    for node in all_nodes(model.graph):
        holds_graphs = any(attr.HasField("g") or attr.graphs for attr in node.attribute)
        if not holds_graphs and (node.domain or "") in ("", "ai.onnx"):
            checker.C.check_node(node.SerializeToString(), context, checker.C.LexicalScopeContext())


def _drop_default_attributes(graph: Any, version: int) -> None:
    """Attributes the older schema lacks, set to the newer schema's default (exporters write
    Reshape's allowzero=0): dropping them changes nothing; any other value is left for the checker."""
    from onnx import defs, helper

    for node in all_nodes(graph):
        if (node.domain or "") not in ("", "ai.onnx"):
            continue
        try:
            older, newer = defs.get_schema(node.op_type, version, ""), defs.get_schema(node.op_type, version + 1, "")
        except Exception:
            continue
        keep = []
        for attr in node.attribute:
            default = newer.attributes[attr.name].default_value if attr.name in newer.attributes else None
            if (attr.name not in older.attributes and default is not None and default.name
                    and helper.get_attribute_value(default) == helper.get_attribute_value(attr)):
                continue
            keep.append(attr)
        if len(keep) != len(node.attribute):
            del node.attribute[:]
            node.attribute.extend(keep)


def _ops_newer_than(graph: Any, version: int) -> list[tuple[str, int]]:
    """(op, first opset) of the default-domain ops in `graph` that opset `version` does not have."""
    found = {}
    for node in all_nodes(graph):
        if (node.domain or "") in ("", "ai.onnx") and node.op_type not in found:
            first = _first_versions().get(node.op_type)
            if first is not None and first > version:
                found[node.op_type] = first
    return sorted(found.items())


@functools.lru_cache(maxsize=1)
def _first_versions() -> dict[str, int]:
    from onnx import defs

    first: dict[str, int] = {}
    for schema in defs.get_all_schemas_with_history():
        if schema.domain in ("", "ai.onnx"):
            first[schema.name] = min(first.get(schema.name, schema.since_version), schema.since_version)
    return first


def _default_opset(model: Any) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _last(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]
