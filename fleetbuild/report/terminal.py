"""The terminal reporter: plan and build tables on stdout, a line per finished job and the notices
on stderr, live progress of the running jobs when stderr is a terminal."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text

from fleetbuild.report.events import OutputOptions, Reporter
from fleetbuild.report.format import job_line, size_text, table

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.plan.planner import Plan
    from fleetbuild.report.results import JobResult, RunSummary


STATUS_STYLE = {"ok": "green", "invalid": "red", "warning": "yellow"}
BUILD_STYLE = {"built": "green", "cached": "cyan", "failed": "red", "invalid": "red"}
FULL_TABLE_LIMIT = 100   # above this, tables list only jobs with problems (rich renders ~1 ms per row)


class TerminalReporter(Reporter):
    """Tables on stdout; one line per finished job and the notices on stderr; live progress of the
    running jobs when stderr is a terminal (never in GitHub mode)."""

    def __init__(self, output: OutputOptions) -> None:
        self.output = output
        self._live: Any = None

    def _line(self, text: str) -> None:
        console = self._live.console if self._live is not None else self.output.err
        console.print(text, markup=False, highlight=False)

    def notice(self, text: str) -> None:
        self._line(text)

    def job_finished(self, result: "JobResult") -> None:
        if not self.output.github:          # the GitHub reporter prints it inside the job's group
            self._line(job_line(result))

    def build_started(self, monitor: Any) -> None:
        if self.output.err.is_terminal and not self.output.github:
            from fleetbuild.report.progress import LiveProgress

            self._live = LiveProgress(monitor, self.output.err).__enter__()

    def build_ended(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.__exit__(None, None, None)

    def run_finished(self, summary: "RunSummary") -> None:
        if self.output.json == "-":         # stdout holds the JSON alone
            return
        if summary.results is None:
            self._plan_table(summary.plan)
        else:
            self._build_table(summary)

    def _plan_table(self, plan: "Plan") -> None:
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
            trial = (planned.trial or {}).get("text", "")
            rows.append((planned.job.id, planned.target.name, planned.job.precision, status, reason, trial))
        console = self.output.console
        tried = any(planned.trial for planned in plan.jobs)
        if rows:
            columns = ("job", "target", "precision", "status", "reason") + (("trial",) if tried else ())
            console.print(table(None, columns, [row if tried else row[:-1] for row in rows]))
        if not show_all:
            console.print(f"{len(plan.jobs) - len(rows)} jobs without problems not listed "
                          "(--all lists every job, --json writes them all)")
        invalid = len(plan.invalid)
        skipped = plan.total - len(plan.jobs)
        line = f"{len(plan.jobs)} jobs planned, {len(plan.jobs) - invalid} ok, {invalid} invalid"
        if skipped:
            line += f" ({skipped} not selected)"
        console.print(line)

    def _build_table(self, summary: "RunSummary") -> None:
        results = summary.results or ()
        rows = [(r.job_id, r.host or "", Text(r.status, style=BUILD_STYLE.get(r.status, "")),
                 f"{r.seconds:.1f}" if r.seconds else "", size_text(r.engine_size), r.reason or "") for r in results]
        counts = summary.counts()
        self.output.console.print(table(None, ("job", "host", "status", "seconds", "engine", "reason"), rows))
        self.output.console.print(f"{counts['built']} built, {counts['cached']} cached, "
                                  f"{counts['failed'] + counts['invalid']} failed or invalid, of {len(results)} jobs")
