"""`--report FILE`: one self-contained HTML page (inline CSS; no script, external style or font).

The grid is models × targets, each cell holding the cell's jobs coloured by status; each job opens
(a <details> element, so no script is needed) to its reason, host, TensorRT flavor and version,
engine size, build time and build key.
"""
from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetbuild.errors import EnvironmentProblem
from fleetbuild.remote.redact import redact
from fleetbuild.report.events import OutputOptions, Reporter
from fleetbuild.report.format import job_grid, size_text

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.plan.planner import PlannedJob
    from fleetbuild.report.results import JobResult, RunSummary

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px} .sub{color:#59636e;margin:0 0 16px}
.counts span{display:inline-block;margin-right:10px;padding:2px 8px;border-radius:6px} table.grid{border-collapse:collapse}
.grid th,.grid td{border:1px solid #d1d9e0;padding:6px;vertical-align:top;text-align:left}
.grid th{background:#f6f8fa} .empty{color:#818b98}
details.job{margin:2px 0;border-radius:6px;padding:3px 8px;min-width:150px}
details.job summary{cursor:pointer;font-weight:600}
details.job dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:6px 0 2px;font-weight:400}
details.job dt{color:#59636e} details.job dd{margin:0;word-break:break-all}
.built,.ok{background:#dafbe1;border:1px solid #4ac26b} .cached{background:#ddf4ff;border:1px solid #54aeff}
.failed{background:#ffebe9;border:1px solid #ff8182} .invalid{background:#ffe2e0;border:1px solid #cf222e}
.warning{background:#fff8c5;border:1px solid #d4a72c} pre{white-space:pre-wrap;margin:0;font-size:12px}
"""


class HtmlReporter(Reporter):
    def __init__(self, output: OutputOptions) -> None:
        self.path = Path(output.report or "report.html")

    def run_finished(self, summary: "RunSummary") -> None:
        text = render(summary)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(redact(text), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as err:
            tmp.unlink(missing_ok=True) if tmp.parent.exists() else None
            raise EnvironmentProblem(f"--report {self.path}: cannot write the report: {err.strerror or err}") from None


def render(summary: "RunSummary") -> str:
    plan = summary.plan
    grid = job_grid(summary)
    models, targets = grid.models, grid.targets
    cells = {key: [_job(planned, result, summary.results is not None) for planned, result in jobs]
             for key, jobs in grid.cells.items()}
    project = plan.config.project
    kind = "build" if summary.results is not None else "plan"
    counts = summary.counts()
    shown = counts if summary.results is not None else {"ok": len(plan.jobs) - counts["invalid"],
                                                        "invalid": counts["invalid"]}
    head = "".join(f"<th scope=col>{_e(t)}</th>" for t in targets)
    rows = "".join(
        f"<tr><th scope=row>{_e(m)}</th>"
        + "".join(f"<td>{''.join(cells[(m, t)])}</td>" if (m, t) in cells else "<td class=empty>—</td>"
                  for t in targets) + "</tr>" for m in models)
    release = ""
    if summary.release is not None:
        index = summary.release.index
        release = (f"<p>Published {_e(index['project'])} {_e(str(index['version']))} (sequence {index['sequence']}, "
                   f"{len(index['entries'])} jobs): <code>{_e(summary.release.url)}</code></p>")
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content=\"width=device-width,initial-scale=1\">"
            f"<title>fleetbuild {kind}: {_e(project.name)} {_e(str(project.version))}</title>"
            f"<style>{CSS}</style></head><body>"
            f"<h1>fleetbuild {kind}: {_e(project.name)} {_e(str(project.version))}</h1>"
            f"<p class=sub>{_e(str(plan.config.source))} · {time.strftime('%Y-%m-%d %H:%M:%S %Z')} · "
            f"{len(plan.jobs)} jobs</p>"
            f"<p class=counts>" + "".join(f"<span class={k}>{v} {k}</span>" for k, v in shown.items()) + "</p>"
            f"{release}<table class=grid><thead><tr><th>model</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
            f"</body></html>\n")


def _job(planned: "PlannedJob", result: "JobResult | None", built: bool) -> str:
    job = planned.job
    status = result.status if result is not None else planned.status
    warned = planned.ok and any(p.severity != "error" for p in planned.problems)
    css = "warning" if status == "ok" and warned else status
    label = f"{job.precision}{'+' + job.variant if job.variant else ''} · {status}"
    facts: list[tuple[str, Any]] = [("job", job.id), ("status", status),
                                    ("compute capability", planned.target.compute_capability),
                                    ("backend", job.options.backend)]
    if result is not None:
        facts += [("reason", result.reason), ("host", result.host), ("TensorRT", result.tensorrt),
                  ("engine", size_text(result.engine_size) if result.engine_size else None),
                  ("build time", f"{result.seconds:.1f} s" if result.seconds else None),
                  ("attempts", result.attempts or None), ("build key", result.build_key)]
    problems = [f"{p.code}: {p.text()}" for p in planned.problems]
    if problems and (result is None or result.status == "invalid"):
        facts.append(("problems", "\n".join(problems)))
    elif problems:
        facts.append(("plan warnings", "\n".join(problems)))
    if planned.trial:
        facts.append(("trial", planned.trial.get("text")))
    if not built:
        facts.append(("plan key", planned.plan_key))
    log = "\n".join(result.log_tail[-20:]) if result is not None and result.log_tail else ""
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_pre(str(v))}</dd>" for k, v in facts if v not in (None, ""))
    if log:
        rows += f"<dt>log tail</dt><dd><pre>{_e(log)}</pre></dd>"
    opened = " open" if status in ("failed", "invalid") else ""      # problems show without a click
    return (f"<details class=\"job {css}\"{opened} id=\"{_e(job.id)}\" data-job=\"{_e(job.id)}\" data-status=\"{_e(status)}\">"
            f"<summary>{_e(label)}</summary><dl>{rows}</dl></details>")


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _pre(text: str) -> str:
    return f"<pre>{_e(text)}</pre>" if "\n" in text else _e(text)
