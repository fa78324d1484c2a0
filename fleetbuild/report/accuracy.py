"""Output of `matrix accuracy`: a progress bar while it runs (on a terminal), then a table (or
--json, --report HTML) with each job's worst output and its verdict."""
from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from fleetbuild.plan.accuracy import Accuracy, fmt, fmt_cosine, worst
from fleetbuild.errors import EnvironmentProblem
from fleetbuild.remote.redact import redact
from fleetbuild.report.events import OutputOptions
from fleetbuild.report.format import table

VERDICT_STYLE = {"ok": "green", "miss": "red", "error": "red", "no tolerance": "", "skipped": "dim"}


class AccuracyProgress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, output: OutputOptions, total: int) -> None:
        self.progress = Progress(TextColumn("accuracy"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), console=output.err, transient=True,
                                 disable=not output.err.is_terminal)
        self.task = self.progress.add_task("", total=total)
        self._started = False

    def __enter__(self) -> "AccuracyProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def advance(self, job_id: str) -> None:
        if self._started:
            self.progress.advance(self.task)
        self._started = True
        self.progress.update(self.task, description=job_id)


def report_accuracy(output: OutputOptions, plan: Any, results: Sequence[Accuracy]) -> None:
    if output.json is not None:
        output.emit_json({"jobs": [r.to_json() for r in results],
                          "misses": sum(r.verdict == "miss" for r in results),
                          "errors": sum(r.verdict == "error" for r in results)})
    if output.report:
        _write_html(Path(output.report), plan, results)
    if output.json == "-":
        return
    rows = []
    for r in results:
        if r.verdict == "skipped":
            continue
        low = worst(r.outputs)
        rows.append((r.job_id, r.precision, r.method, low.name if low else "", fmt(low.max_abs) if low else "",
                     fmt(low.mean_rel) if low else "", fmt_cosine(low.cosine) if low else "",
                     Text(r.verdict, style=VERDICT_STYLE.get(r.verdict, "")), r.reason))
    output.console.print(table(None, ("job", "precision", "method", "worst output", "max abs", "mean rel",
                                      "cosine", "verdict", "reason"), rows))
    measured = [r for r in results if r.verdict != "skipped"]
    output.console.print(f"{len(measured)} jobs measured ({sum(r.method == 'estimate' for r in measured)} estimates), "
                         f"{sum(r.verdict == 'miss' for r in measured)} miss their tolerance, "
                         f"{sum(r.verdict == 'error' for r in measured)} could not be measured; "
                         f"{len(results) - len(measured)} fp32/tf32 or invalid jobs skipped")


def _write_html(path: Path, plan: Any, results: Sequence[Accuracy]) -> None:
    e = html.escape
    rows = "".join(
        f"<tr class=\"{e(r.verdict.replace(' ', '-'))}\" data-job=\"{e(r.job_id)}\"><td>{e(r.job_id)}</td>"
        f"<td>{e(r.method)}</td><td>{e(r.inputs)}</td><td>{e(o.name)}</td><td>{fmt(o.max_abs)}</td>"
        f"<td>{fmt(o.mean_rel)}</td><td>{fmt_cosine(o.cosine)}</td><td>{e(r.verdict)}</td><td>{e(r.reason)}</td></tr>"
        for r in results if r.verdict != "skipped" for o in (r.outputs or [None]) if o is not None) + "".join(
        f"<tr class=error data-job=\"{e(r.job_id)}\"><td>{e(r.job_id)}</td><td>{e(r.method)}</td><td></td><td></td>"
        f"<td></td><td></td><td></td><td>{e(r.verdict)}</td><td>{e(r.reason)}</td></tr>"
        for r in results if r.verdict != "skipped" and not r.outputs)
    project = plan.config.project
    page = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>fleetbuild accuracy: "
            f"{e(project.name)} {e(str(project.version))}</title><style>"
            "body{font:14px/1.4 system-ui,sans-serif;margin:24px} table{border-collapse:collapse}"
            "td,th{border:1px solid #d1d9e0;padding:4px 8px;text-align:left} th{background:#f6f8fa}"
            ".ok{background:#dafbe1} .miss,.error{background:#ffebe9}</style></head><body>"
            f"<h1>fleetbuild accuracy: {e(project.name)} {e(str(project.version))}</h1><table><thead><tr>"
            "<th>job</th><th>method</th><th>inputs</th><th>output</th><th>max abs</th><th>mean rel</th>"
            f"<th>cosine</th><th>verdict</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></body></html>\n")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(redact(page), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        raise EnvironmentProblem(f"--report {path}: cannot write the report: {err.strerror or err}") from None
