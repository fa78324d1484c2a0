"""Text shared by the reporters and commands: tables, sizes, one line per finished job, and the
models × targets grid of a run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.report.results import JobResult, RunSummary


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for name in columns:
        out.add_column(name, overflow="fold")
    for row in rows:  # plain strings are shown as they are: no rich markup in user-provided text
        out.add_row(*(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell))
                      for cell in row))
    return out


@dataclass(frozen=True)
class Grid:
    """Models × targets of a run: each cell the (planned job, its result or None) pairs, in plan order."""

    models: list[str]
    targets: list[str]
    cells: dict[tuple[str, str], list[tuple[Any, Any]]]


def job_grid(summary: "RunSummary") -> Grid:
    results = {r.job_id: r for r in summary.results or ()}
    plan = summary.plan
    cells: dict[tuple[str, str], list[tuple[Any, Any]]] = {}
    for planned in plan.jobs:
        cells.setdefault((planned.job.model, planned.job.target), []).append((planned, results.get(planned.job.id)))
    return Grid(list(dict.fromkeys(p.job.model for p in plan.jobs)),
                list(dict.fromkeys(p.job.target for p in plan.jobs)), cells)


def job_line(result: "JobResult") -> str:
    """One line for a finished job."""
    if result.status == "built":
        return f"built  {result.job_id} on {result.host} in {result.seconds:.1f} s ({size_text(result.engine_size)})"
    if result.status == "cached":
        return f"cached {result.job_id}"
    return f"FAILED {result.job_id}" + (f" on {result.host}" if result.host else "") + f": {result.reason}"


def size_text(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)
