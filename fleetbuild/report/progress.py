"""Live progress on a terminal: one line per running job (host, the worker's phase from its
status.json, elapsed) and overall counts. Polls each busy host's status once every POLL seconds
through the worker's `status` command; off when stderr is not a terminal."""
from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from fleetbuild.report.format import table

POLL = 2.0


class LiveProgress:
    def __init__(self, dispatcher: Any, console: Console) -> None:
        self.dispatcher, self.console = dispatcher, console
        self.phases: dict[str, str] = {}
        self._stop = threading.Event()
        self._live = Live(console=console, refresh_per_second=2, transient=True)
        self._thread = threading.Thread(target=self._poll, name="progress", daemon=True)

    def notify(self, line: str) -> None:
        self._live.console.print(line, markup=False, highlight=False)

    def __enter__(self) -> "LiveProgress":
        self._live.__enter__()
        self._live.update(self._render(), refresh=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        self._live.__exit__(*exc)

    def _poll(self) -> None:
        last = 0.0
        while not self._stop.wait(0.5):
            if time.time() - last >= POLL:
                last = time.time()
                by_host: dict[str, tuple[Any, list[tuple[str, str]]]] = {}
                for job, state, out, _ in self.dispatcher.running():
                    by_host.setdefault(state.host.name, (state, []))[1].append((job, out))
                for state, jobs in by_host.values():
                    try:
                        found = self.dispatcher.remote_status(state, [out for _, out in jobs])
                    except Exception:   # progress is best effort; the build reports real failures
                        continue
                    for job, out in jobs:
                        status = found.get(out) or {}
                        self.phases[job] = status.get("phase", "starting")
            self._live.update(self._render())

    def _render(self) -> Group:
        running = self.dispatcher.running()
        rows = [(job, state.host.name, self.phases.get(job, "starting"), f"{time.time() - started:.0f} s")
                for job, state, _, started in sorted(running)]
        done = self.dispatcher.finished
        built = sum(r.status == "built" for r in done)
        line = Text(f"{built} built, {len(done) - built} failed, {len(running)} running, "
                    f"{max(0, self.dispatcher.total - len(done) - len(running))} queued")
        return Group(table(None, ("job", "host", "phase", "elapsed"), rows), line) if rows else Group(line)
