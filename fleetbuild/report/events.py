"""Output: the Reporter protocol, the event fan-out (Events), and the built-in terminal and JSON
reporters.

Every output is a reporter fed by the same events — plan_ready, build_started, job_finished,
notice, build_ended, run_finished — and contributed through the `fleetbuild_reporter` hook (the
built-ins too: terminal, JSON, GitHub Actions, HTML). Human output goes to stdout as rich tables
(plain, uncoloured and unwrapped when stdout is not a terminal); per-job lines and notices go to
stderr; `--json [FILE]` writes machine output (to stdout with '-' or no FILE).
"""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleetbuild.errors import FleetbuildError, PluginError
from fleetbuild.filehash import write_json_atomic

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.plan.planner import Plan
    from fleetbuild.report.results import JobResult, RunSummary


@dataclass
class OutputOptions:
    console: Console
    err: Console
    json: str | None = None        # None: human output; "-": JSON on stdout; else a file path
    tty: bool = False
    show_all: bool = False         # list every job even in large runs (--all)
    github: bool = False           # GitHub Actions mode (--github, or GITHUB_ACTIONS=true)
    report: str | None = None      # --report FILE: the HTML report
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, json_dest: str | None = None, stdout: Any = None, stderr: Any = None,
               show_all: bool = False, *, github: bool = False, report: str | None = None,
               env: Mapping[str, str] | None = None) -> "OutputOptions":
        stdout = stdout or sys.stdout
        stderr = stderr or sys.stderr
        env = dict(env or {})
        github = github or env.get("GITHUB_ACTIONS") == "true"
        tty = hasattr(stdout, "isatty") and stdout.isatty()
        no_color = "NO_COLOR" in env or github
        console = Console(file=stdout, soft_wrap=not tty, width=None if tty else 200,
                          no_color=not tty or no_color, highlight=False)
        err_tty = hasattr(stderr, "isatty") and stderr.isatty()
        err = Console(file=stderr, highlight=False, soft_wrap=True, no_color=not err_tty or no_color)
        return cls(console=console, err=err, json=json_dest, tty=tty, show_all=show_all, github=github,
                   report=report, env=env)

    def emit_json(self, data: Any) -> None:
        """JSON to stdout (indented on a terminal, compact otherwise: 10x faster for big plans) or
        atomically to the --json FILE."""
        if self.json in (None, "-"):
            self.console.file.write(json.dumps(data, indent=2 if self.tty else None) + "\n")
            self.console.file.flush()
        else:
            try:
                write_json_atomic(Path(self.json), data)
            except OSError as err:
                raise FleetbuildError(f"--json {self.json}: cannot write: {err.strerror or err}") from None


class Reporter:
    """Receives run events. Subclass it and override what you need (every method is optional).

    Events arrive one at a time (never concurrently), in this order: plan_ready; for a build,
    build_started, then notice and job_finished as they happen, then build_ended; run_finished last.
    """

    def plan_ready(self, plan: "Plan") -> None:
        """The plan is made: every selected job with its problems."""

    def build_started(self, monitor: Any) -> None:
        """Jobs are being dispatched. `monitor` has running() -> [(job id, host state, remote out
        dir, start time)], finished (JobResults so far), total, and remote_status(state, outs)."""

    def job_finished(self, result: "JobResult") -> None:
        """One job ended on a host (built or failed); cached and invalid jobs come only in run_finished."""

    def notice(self, text: str) -> None:
        """A one-line message about the run (a host left out or lost, a retry, a release published)."""

    def build_ended(self) -> None:
        """No more jobs will finish (also after an interrupt)."""

    def run_finished(self, summary: "RunSummary") -> None:
        """The run ended; `summary` holds the plan, every JobResult of a build, and the release."""


EVENTS = ("plan_ready", "build_started", "job_finished", "notice", "build_ended", "run_finished")


class Events:
    """Fans each event out to every reporter, in registration order, one event at a time.

    A reporter that raises FleetbuildError (say, an unwritable report file) stops the run with that
    error; any other exception is a broken plugin (PluginError naming the reporter).
    """

    def __init__(self, reporters: Sequence[Reporter] = ()) -> None:
        self.reporters = list(reporters)
        self._lock = threading.RLock()

    def _send(self, event: str, *args: Any) -> None:
        with self._lock:
            for reporter in self.reporters:
                try:
                    getattr(reporter, event)(*args)
                except FleetbuildError:
                    raise
                except Exception as err:
                    raise PluginError(f"reporter {type(reporter).__name__} failed in {event}: "
                                      f"{type(err).__name__}: {err} (--debug shows the traceback)") from err

    def plan_ready(self, plan: "Plan") -> None:
        self._send("plan_ready", plan)

    def build_started(self, monitor: Any) -> None:
        self._send("build_started", monitor)

    def job_finished(self, result: "JobResult") -> None:
        self._send("job_finished", result)

    def notice(self, text: str) -> None:
        self._send("notice", text)

    def build_ended(self) -> None:
        self._send("build_ended")

    def run_finished(self, summary: "RunSummary") -> None:
        self._send("run_finished", summary)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for name in columns:
        out.add_column(name, overflow="fold")
    for row in rows:  # plain strings are shown as they are: no rich markup in user-provided text
        out.add_row(*(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell))
                      for cell in row))
    return out


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

    def _build_table(self, summary: "RunSummary") -> None:
        results = summary.results or ()
        rows = [(r.job_id, r.host or "", Text(r.status, style=BUILD_STYLE.get(r.status, "")),
                 f"{r.seconds:.1f}" if r.seconds else "", size_text(r.engine_size), r.reason or "") for r in results]
        counts = summary.counts()
        self.output.console.print(table(None, ("job", "host", "status", "seconds", "engine", "reason"), rows))
        self.output.console.print(f"{counts['built']} built, {counts['cached']} cached, "
                                  f"{counts['failed'] + counts['invalid']} failed or invalid, of {len(results)} jobs")


class JsonReporter(Reporter):
    """--json [FILE]: the plan, or the build's results with counts and the release."""

    def __init__(self, output: OutputOptions) -> None:
        self.output = output

    def run_finished(self, summary: "RunSummary") -> None:
        self.output.emit_json(summary_json(summary))


def summary_json(summary: "RunSummary") -> dict[str, Any]:
    if summary.results is None:
        return summary.plan.to_json()
    counts = summary.counts()
    data: dict[str, Any] = {"built": counts["built"], "cached": counts["cached"],
                            "failed": counts["failed"] + counts["invalid"], "invalid": counts["invalid"],
                            "results": [r.to_json() for r in summary.results]}
    if summary.release is not None:
        index = summary.release.index
        data["release"] = {"project": index["project"], "version": index["version"], "sequence": index["sequence"],
                           "index": summary.release.url, "channel": summary.release.channel}
    return data


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
