"""The event stream every output reads: the Reporter protocol, the fan-out to every reporter
(Events), and the run's output options (consoles, --json, GitHub mode, --report).

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

from fleetbuild.errors import FleetbuildError, PluginError
from fleetbuild.filehash import write_json_atomic
from fleetbuild.remote.redact import RedactingStream, redact

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
        stdout = RedactingStream(stdout or sys.stdout)      # no secret reaches the terminal or a log
        stderr = RedactingStream(stderr or sys.stderr)
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
                write_json_atomic(Path(self.json), json.loads(redact(json.dumps(data))))
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
