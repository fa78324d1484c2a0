"""Which ONNX operators each TensorRT release's ONNX parser takes.

Data: targets/onnx_trt_ops.tsv (the parser's own support table per release, 8.2 to 10.1, regenerated
by tools/onnx_trt_ops.py; a test keeps those columns equal to shared/ONNX_TRT_OPS.tsv), whose last
column is TensorRT-RTX's parser (10.1's table with the ops TensorRT-RTX 1.7 was measured to refuse).
A release maps to the newest table at or below it (10.1's for every later release, 8.2's for 8.0).
"""
from __future__ import annotations

import functools
import importlib.resources
import dataclasses
from dataclasses import dataclass
from typing import Iterable, Mapping

from packaging.version import Version

from fleetbuild.config.tensorrt_releases import allowed_releases

TABLE_OPSET = 20          # the last table (10.1) covers opsets up to 20


@dataclass(frozen=True)
class OpTable:
    columns: tuple[Version, ...]
    rows: Mapping[str, tuple[str, ...]]           # op -> "Y" / "N" / "-" per column
    rtx: Mapping[str, str] = dataclasses.field(default_factory=dict)    # op -> TensorRT-RTX's Y / N / -

    def rtx_supported(self, op: str) -> bool | None:
        mark = self.rtx.get(op, "-")
        return None if mark == "-" else mark == "Y"

    def column(self, release: Version) -> int:
        return _column(self.columns, release)

    def supported(self, op: str, release: Version) -> bool | None:
        """True / False from the table, None when the op is not in it at all."""
        row = self.rows.get(op)
        return None if row is None else row[self.column(release)] == "Y"

    def first_release(self, op: str) -> Version | None:
        row = self.rows.get(op) or ()
        return next((c for c, mark in zip(self.columns, row) if mark == "Y"), None)


@functools.lru_cache(maxsize=256)
def _column(columns: tuple[Version, ...], release: Version) -> int:
    below = [i for i, c in enumerate(columns) if c <= Version(f"{release.major}.{release.minor}")]
    return below[-1] if below else 0


@functools.lru_cache(maxsize=None)
def op_table() -> OpTable:
    text = importlib.resources.files("fleetbuild_targets").joinpath("onnx_trt_ops.tsv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    releases = [i for i, name in enumerate(header) if i and not name.startswith("rtx")]
    rtx_at = next((i for i, name in enumerate(header) if name.startswith("rtx")), None)
    rows, rtx = {}, {}
    for line in lines[1:]:
        cells = line.split("\t")
        rows[cells[0]] = tuple(cells[i] for i in releases)
        if rtx_at is not None:
            rtx[cells[0]] = cells[rtx_at]
    return OpTable(tuple(Version(header[i]) for i in releases), rows, rtx)


@dataclass(frozen=True)
class OpVerdict:
    op: str
    supported: bool
    reason: str               # what the table says, for messages
    first_release: Version | None = None


def check_ops(op_types: Iterable[str], op_since: Mapping[str, int], backend: str,
              tensorrt_range: str | None) -> list[OpVerdict]:
    """Verdicts for the ops no allowed release parses (and ops unknown to ONNX itself).

    `op_since` gives each standard op's first opset (0 when ONNX has no such op): an op the tables
    do not list but that ONNX defined after opset 20 is newer than the last table and passes.
    Remembered per (ops, backend, range): a matrix has few distinct models and target ranges.
    """
    ops = tuple(sorted(set(op_types)))
    return list(_verdicts(ops, tuple(op_since.get(op, 0) for op in ops), backend, tensorrt_range))


@functools.lru_cache(maxsize=4096)
def _verdicts(ops: tuple[str, ...], since_of: tuple[int, ...], backend: str,
              tensorrt_range: str | None) -> tuple[OpVerdict, ...]:
    table = op_table()
    out = []
    rtx = backend == "tensorrt-rtx"
    releases = () if rtx else allowed_releases("tensorrt", tensorrt_range)
    if not rtx and not releases:
        return ()
    for op, since in zip(ops, since_of):
        if since == 0:
            out.append(OpVerdict(op, False, "not an ONNX operator"))
            continue
        if rtx and table.rtx_supported(op) is False:
            out.append(OpVerdict(op, False, "unsupported by TensorRT-RTX's parser"))
            continue
        verdicts = [table.rtx_supported(op)] if rtx else [table.supported(op, r) for r in releases]
        if any(v is True for v in verdicts):
            continue
        if all(v is None for v in verdicts):
            if since > TABLE_OPSET:
                continue                   # newer than every table: the parser decides
            out.append(OpVerdict(op, False, "not in the parser's support table", None))
            continue
        out.append(OpVerdict(op, False, "unsupported", table.first_release(op)))
    return tuple(out)
