"""Output: the Reporter protocol, the built-in terminal reporter, and table/JSON helpers.

Human output goes to stdout as rich tables (plain, uncoloured, unwrapped when stdout is not a
terminal); `--json [FILE]` writes machine output instead (to stdout with '-' or no FILE). Errors
and warnings go to stderr.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleetbuild.filehash import write_json_atomic


@dataclass
class OutputOptions:
    console: Console
    err: Console
    json: str | None = None        # None: human output; "-": JSON on stdout; else a file path
    tty: bool = False
    show_all: bool = False         # list every job even in large runs (--all)

    @classmethod
    def create(cls, json_dest: str | None, stdout: Any = None, stderr: Any = None,
               show_all: bool = False) -> "OutputOptions":
        stdout = stdout or sys.stdout
        stderr = stderr or sys.stderr
        tty = hasattr(stdout, "isatty") and stdout.isatty()
        console = Console(file=stdout, soft_wrap=not tty, width=None if tty else 200,
                          no_color=not tty or "NO_COLOR" in os.environ, highlight=False)
        err = Console(file=stderr, highlight=False, soft_wrap=True,
                      no_color=not (hasattr(stderr, "isatty") and stderr.isatty()))
        return cls(console=console, err=err, json=json_dest, tty=tty, show_all=show_all)

    def emit_json(self, data: Any) -> None:
        """JSON to stdout (indented on a terminal, compact otherwise: 10x faster for big plans) or
        atomically to the --json FILE."""
        if self.json in (None, "-"):
            self.console.file.write(json.dumps(data, indent=2 if self.tty else None) + "\n")
            self.console.file.flush()
        else:
            write_json_atomic(Path(self.json), data)


class Reporter:
    """Receives run events. Subclass it and override what you need (every method is optional)."""

    def plan_ready(self, plan: Any) -> None:
        """The plan is made: every selected job with its problems."""

    def job_finished(self, result: Any) -> None:
        """One job ended (built, cached or failed)."""

    def run_finished(self, summary: Any) -> None:
        """The run ended; `summary` holds every JobResult."""


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for name in columns:
        out.add_column(name, overflow="fold")
    for row in rows:  # plain strings are shown as they are: no rich markup in user-provided text
        out.add_row(*(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell))
                      for cell in row))
    return out


STATUS_STYLE = {"ok": "green", "invalid": "red", "warning": "yellow"}
FULL_TABLE_LIMIT = 100   # above this, tables list only jobs with problems (rich renders ~1 ms per row)


class TerminalReporter(Reporter):
    def __init__(self, output: OutputOptions) -> None:
        self.output = output

    def plan_ready(self, plan: Any) -> None:
        if self.output.json is not None:
            self.output.emit_json(plan.to_json())
            if self.output.json == "-":
                return
        rows = []
        show_all = self.output.show_all or len(plan.jobs) <= FULL_TABLE_LIMIT
        for planned in plan.jobs:
            if not show_all and not planned.problems:
                continue
            errors = [p for p in planned.problems if p.severity == "error"]
            warnings = [p for p in planned.problems if p.severity != "error"]
            status = Text(planned.status, style=STATUS_STYLE[planned.status])
            if planned.ok and warnings:
                status.append(" (warning)", style="yellow")
            reason = "\n".join(f"{p.code}: {p.text()}" for p in errors + warnings)
            rows.append((planned.job.id, planned.target.name, planned.job.precision, status, reason))
        console = self.output.console
        if rows:
            console.print(table(None, ("job", "target", "precision", "status", "reason"), rows))
        if not show_all:
            console.print(f"{len(plan.jobs) - len(rows)} jobs without problems not listed "
                          "(--all lists every job, --json writes them all)")
        invalid = len(plan.invalid)
        skipped = plan.total - len(plan.jobs)
        line = f"{len(plan.jobs)} jobs planned, {len(plan.jobs) - invalid} ok, {invalid} invalid"
        if skipped:
            line += f" ({skipped} not selected)"
        console.print(line)


BUILD_STYLE = {"built": "green", "cached": "cyan", "failed": "red", "invalid": "red"}


def build_summary(output: OutputOptions, results: Sequence[Any]) -> None:
    """The final table of `matrix build` (and JSON with --json)."""
    data = {"built": sum(r.status == "built" for r in results), "cached": sum(r.status == "cached" for r in results),
            "failed": sum(r.status not in ("built", "cached") for r in results),
            "results": [r.to_json() for r in results]}
    if output.json is not None:
        output.emit_json(data)
        if output.json == "-":
            return
    rows = [(r.job_id, r.host or "", Text(r.status, style=BUILD_STYLE.get(r.status, "")),
             f"{r.seconds:.1f}" if r.seconds else "", _size(r.engine_size), r.reason or "") for r in results]
    output.console.print(table(None, ("job", "host", "status", "seconds", "engine", "reason"), rows))
    output.console.print(f"{data['built']} built, {data['cached']} cached, {data['failed']} failed or invalid, "
                         f"of {len(results)} jobs")


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
