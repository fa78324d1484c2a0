"""GitHub Actions mode (`--github`, on when GITHUB_ACTIONS=true): workflow commands in the log,
a Markdown summary in $GITHUB_STEP_SUMMARY and step outputs in $GITHUB_OUTPUT.

- `::group::` … `::endgroup::` around each finished job's line and the tail of its build log;
- `::error file=…,line=…` for every invalid or failed job, at the line of fleet.toml that made it
  (the model's table, or the matrix include entry that added the job); `::warning` for plan warnings;
- `::add-mask::` before anything secret-like reaches the log (presigned URLs, tokens, and on a real
  runner the values of secret-named environment variables);
- outputs: matrix (for `strategy.matrix`), targets, built, cached, failed, invalid, release-index,
  release-version — written with the multi-line-safe `name<<DELIMITER` form.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from fleetbuild.errors import EnvironmentProblem
from fleetbuild.remote.redact import redact
from fleetbuild.report.events import OutputOptions, Reporter
from fleetbuild.report.format import job_grid, job_line, size_text
from fleetbuild.config.tomlfile import key_lines

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.config.fleet import FleetConfig
    from fleetbuild.plan.planner import Plan, PlannedJob
    from fleetbuild.report.results import JobResult, RunSummary

LOG_TAIL = 20
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSPHRASE|PRIVATE_KEY|CREDENTIAL", re.I)
SECRET_TEXT = (
    re.compile(r"https?://[^\s\"'<>]*[?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|sig)="
               r"[^\s\"'<>]*"),                                  # presigned URLs (S3 SigV4/V2, Azure SAS)
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),               # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}\b"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),                # AWS access key ids
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),              # user:password@ in URLs
)


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: Any) -> str:
    """One workflow command line, e.g. command("error", "bad", file="fleet.toml", line=3)."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items() if v not in (None, ""))
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def secret_values(text: str) -> list[str]:
    """The secret-like substrings of `text` (to mask before it is printed)."""
    return [m.group() for pattern in SECRET_TEXT for m in pattern.finditer(text)]


class GithubReporter(Reporter):
    def __init__(self, output: OutputOptions, config: "FleetConfig | None") -> None:
        self.output, self.config = output, config
        self.env = output.env
        self.stream = output.err.file      # beside the per-job lines and notices, so masks come first
        self.masked: set[str] = set()
        self.planned: dict[str, "PlannedJob"] = {}
        self._file, self._lines = self._locate(config)
        if self.env.get("GITHUB_ACTIONS") == "true":     # a real runner: never echo these elsewhere
            for name, value in self.env.items():
                if SECRET_NAME.search(name):
                    self._mask(line for line in value.splitlines())

    # ---- the log --------------------------------------------------------------------------------
    def _mask(self, values: Iterable[str]) -> None:
        for value in values:
            value = value.strip()
            if len(value) >= 6 and value not in self.masked:
                self.masked.add(value)
                self._write(f"::add-mask::{value}", mask=False)

    def _write(self, line: str, mask: bool = True) -> None:
        if mask:
            self._mask(secret_values(line))
        self.stream.write(line + "\n")
        self.stream.flush()

    def plan_ready(self, plan: "Plan") -> None:
        self.planned = {p.job.id: p for p in plan.jobs}     # one lookup per finished job, not a scan
        for planned in plan.jobs:
            for problem in planned.problems:
                severity = "error" if problem.severity == "error" else "warning"
                title = f"{'invalid job' if severity == 'error' else 'warning for'} {planned.job.id}"
                self._annotate(severity, planned, f"{problem.code}: {problem.text()}", title)

    def notice(self, text: str) -> None:
        self._mask(secret_values(text))

    def job_finished(self, result: "JobResult") -> None:
        self._write(command("group", job_line(result)).replace("%0A", " "))
        for line in result.log_tail[-LOG_TAIL:]:
            self._write("  " + line)
        if result.status != "built" and not result.log_tail:
            self._write(f"  {result.kind or 'failed'}: {result.reason}")
        self._write("::endgroup::")
        if result.status not in ("built", "cached"):
            self._annotate("error", self.planned.get(result.job_id), f"{result.kind or 'failed'}: {result.reason}",
                           f"build failed: {result.job_id}")

    def _annotate(self, severity: str, planned: "PlannedJob | None", message: str, title: str) -> None:
        line = self._line_of(planned) if planned is not None else None
        self._write(command(severity, message, file=self._file, line=line, title=title))

    # ---- where a job comes from in fleet.toml ---------------------------------------------------
    def _locate(self, config: "FleetConfig | None") -> tuple[str | None, Mapping[tuple, int]]:
        if config is None:
            return None, {}
        workspace = Path(self.env.get("GITHUB_WORKSPACE") or os.getcwd()).resolve()
        path = Path(config.path).resolve()
        try:
            shown = path.relative_to(workspace).as_posix()
        except ValueError:
            shown = str(path)
        try:
            lines = key_lines(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            lines = {}
        return shown, lines

    def _line_of(self, planned: "PlannedJob") -> int | None:
        job = planned.job
        include = self.config.matrix.include if self.config is not None else ()
        for index, entry in enumerate(include):            # a job added by an include entry
            if (entry.get("model") == job.model and entry.get("target") == job.target
                    and entry.get("precision") == job.precision and entry.get("variant", "") == job.variant):
                line = self._lines.get(("matrix", "include", index))
                if line:
                    return line
        return self._lines.get(("models", job.model)) or self._lines.get(("matrix",))

    # ---- summary and outputs ----------------------------------------------------------------------
    def run_finished(self, summary: "RunSummary") -> None:
        summary_path = self.env.get("GITHUB_STEP_SUMMARY")
        if summary_path:
            try:
                with open(summary_path, "a", encoding="utf-8") as handle:
                    handle.write(redact(markdown_summary(summary)))
            except OSError as err:
                self._write(command("warning", f"cannot append the step summary to {summary_path}: "
                                    f"{err.strerror or err}; the build itself is not affected",
                                    title="step summary not written"))
        output_path = self.env.get("GITHUB_OUTPUT")
        if output_path:
            try:
                with open(output_path, "a", encoding="utf-8") as handle:
                    for name, value in step_outputs(summary).items():
                        handle.write(output_entry(name, redact(value)))
            except OSError as err:
                message = f"cannot write the step outputs to $GITHUB_OUTPUT ({output_path}): {err.strerror or err}"
                self._write(command("error", message, title="outputs not written"))
                raise EnvironmentProblem(message) from None


def output_entry(name: str, value: str) -> str:
    """`name<<DELIM\\nvalue\\nDELIM\\n`, with a delimiter that cannot occur in the value."""
    while True:
        delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
        if delimiter not in value:
            return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def step_outputs(summary: "RunSummary") -> dict[str, str]:
    valid = [p for p in summary.plan.jobs if p.ok]
    per_target: dict[str, list] = {}
    for planned in valid:
        per_target.setdefault(planned.target.name, []).append(planned)
    include = [{"target": name, "inventory_group": jobs[0].target.inventory_group, "jobs": len(jobs)}
               for name, jobs in per_target.items()]
    counts = summary.counts()
    release = summary.release
    return {"matrix": json.dumps({"include": include}), "targets": json.dumps(list(per_target)),
            **{name: str(value) for name, value in counts.items()},
            "release-index": release.url if release else "",
            "release-version": str(release.index["version"]) if release else ""}


STATUS_MARK = {"ok": "✅", "built": "✅", "cached": "♻️", "failed": "❌", "invalid": "⛔"}


def markdown_summary(summary: "RunSummary") -> str:
    """Models × targets, each cell the job's precisions with status, engine size and build time,
    then the failures with their reasons."""
    plan = summary.plan
    grid = job_grid(summary)
    cells: dict[tuple[str, str], list[str]] = {}
    for key, jobs in grid.cells.items():
        for planned, result in jobs:
            job = planned.job
            status = result.status if result is not None else planned.status
            parts = [f"{job.precision}{'+' + job.variant if job.variant else ''}",
                     f"{STATUS_MARK.get(status, '')} {status}"]
            if result is not None and result.engine_size:
                parts.append(size_text(result.engine_size))
            if result is not None and result.seconds:
                parts.append(f"{result.seconds:.1f} s")
            cells.setdefault(key, []).append(" ".join(parts))
    models, targets = grid.models, grid.targets
    project = plan.config.project
    title = "build" if summary.results is not None else "plan"
    out = [f"## fleetbuild {title}: {_md(project.name)} {_md(str(project.version))}", "",
           "| model | " + " | ".join(_md(t) for t in targets) + " |", "|---" * (len(targets) + 1) + "|"]
    for model in models:
        row = [_md(model)] + ["<br>".join(_md(c) for c in cells.get((model, t), [])) or "—" for t in targets]
        out.append("| " + " | ".join(row) + " |")
    counts = summary.counts()
    out += ["", ", ".join(f"**{value}** {name}" for name, value in counts.items() if summary.results is not None
                          or name == "invalid") + f" of {len(plan.jobs)} jobs"]
    tried = [p.trial for p in plan.jobs if p.trial and p.trial.get("verdict") in ("built", "failed")]
    if tried:
        built = sum(t["verdict"] == "built" for t in tried)
        tool = f"TensorRT-RTX {tried[0]['tool']}" if tried[0].get("tool") else "TensorRT-RTX"
        out += ["", f"Trial builds ({_md(tool)}, on the controller): {built} built, {len(tried) - built} failed"]
    if summary.release is not None:
        index = summary.release.index
        out += ["", f"Published **{_md(index['project'])} {_md(str(index['version']))}** (sequence "
                    f"{index['sequence']}, {len(index['entries'])} jobs): `{summary.release.url}`"]
    failures = []
    for planned, result in (pair for jobs in grid.cells.values() for pair in jobs):
        if result is not None and result.status not in ("built", "cached"):
            failures.append(f"- `{planned.job.id}` ({result.status}{', ' + result.host if result.host else ''}): "
                            f"{_md(result.reason or '')}")
        elif result is None and not planned.ok:
            reasons = "; ".join(f"{p.code}: {p.text()}" for p in planned.problems if p.severity == "error")
            failures.append(f"- `{planned.job.id}` (invalid): {_md(reasons)}")
    if failures:
        out += ["", "### Failures", ""] + failures
    return "\n".join(out) + "\n\n"


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no HTML, one line)."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\n", " "))
