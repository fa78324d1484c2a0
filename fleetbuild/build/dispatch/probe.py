"""Probing: one Ansible play (its fan-out and its unreachable reporting) runs each host's probe
command, which also installs the worker where it is missing; a HostSession per host keeps the
connection for the rest of the run. Facts are cached per host."""
from __future__ import annotations

import json
import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

from fleetbuild.build.bundle import WorkerArchive
from fleetbuild.build.dispatch.ansible import AnsibleRunner, RawResult
from fleetbuild.build.dispatch.session import HostSession
from fleetbuild.build.dispatch.transport import Transport, transport_for
from fleetbuild.errors import FleetbuildError
from fleetbuild.filehash import write_json_atomic
from fleetbuild.build.hosts import Host, Inventory


class Prober:
    """Owns the run's host sessions and Ansible runner; `close()` ends every SSH master they opened."""

    def __init__(self, inventory: Inventory, cache_dir: Path, env: Mapping[str, str],
                 notify: Callable[[str], None] = lambda line: None) -> None:
        self.inventory, self.cache_dir, self.env, self.notify = inventory, cache_dir, env, notify
        self.control_dir = control_dir()
        self.ansible = AnsibleRunner(inventory.path, env, control_dir=self.control_dir,
                                     shared_control_path=Transport.control_path(self.control_dir))
        self.hosts: dict[str, HostSession] = {}

    @cached_property
    def worker(self) -> WorkerArchive:
        """Built when a probe first needs it (facts from the cache need no worker)."""
        return WorkerArchive.build()

    def session(self, host: Host, facts: dict[str, Any] | None = None) -> HostSession:
        return HostSession(host, transport_for(host, self.control_dir), facts=facts, notify=self.notify)

    def probe(self, hosts: list[Host],
              on_probed: Callable[[HostSession], None] | None = None) -> dict[str, HostSession]:
        """Probe `hosts` in one play. `on_probed` is called with each host's session as soon as its
        own probe is in (facts, or a problem), from Ansible's event thread: a caller can start
        work on that host while the others are still being probed."""
        states = {h.name: self.session(h) for h in hosts}
        if not states:
            return states
        self.hosts.update(states)          # at once: close() must find them even if the probe is interrupted
        refused = {name: s for name, s in states.items() if s.host.link.problem}
        for state in refused.values():     # never probed: it could not be built on after its probe either
            state.problem = state.host.link.problem
            if on_probed is not None:
                on_probed(state)

        def arrived(result: RawResult) -> None:
            state = states[result.host]
            state.take_probe(result, self.worker)
            if state.facts is not None:
                state.problem = python_problem(state.facts, state.host.python)
                try:
                    write_json_atomic(self.cache_dir / "facts" / f"{result.host}.json",
                                      {"probed": time.time(), "facts": state.facts})
                except OSError:
                    pass
            if on_probed is not None:
                on_probed(state)

        probed = {name: s for name, s in states.items() if name not in refused}
        if probed:
            self.ansible.run({name: s.probe_command(self.worker) for name, s in probed.items()}, timeout=300,
                             on_result=arrived)
        return states

    def load_cached(self, hosts: list[Host], max_age: float) -> dict[str, HostSession] | None:
        """Sessions from facts probed less than `max_age` seconds ago (no SSH), or None when any
        host has no such facts."""
        states = {}
        for host in hosts:
            try:
                cached = json.loads((self.cache_dir / "facts" / f"{host.name}.json").read_text("utf-8"))
            except (OSError, ValueError):
                return None
            if time.time() - cached.get("probed", 0) > max_age:
                return None
            state = self.session(host, facts=cached["facts"])
            state.problem = host.link.problem or python_problem(cached["facts"], host.python)
            states[host.name] = state
        self.hosts.update(states)
        return states

    def close(self, keep_connections: bool = False) -> None:
        """End every SSH master this run opened: fleetbuild's (unless `keep_connections`: they then
        persist for ControlPersist, reusable by the next run) and Ansible's (a per-run directory)."""
        if not keep_connections:
            for state in self.hosts.values():
                state.close()
        self.ansible.close()


def python_problem(facts: Mapping[str, Any], python: str) -> str | None:
    version = str((facts.get("python") or {}).get("version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < (3, 6):
        return f"{python} is Python {version}, too old for the worker (it needs Python 3.6 or newer; set fleetbuild_python)"
    return None


def control_dir() -> Path:
    """A short per-user directory for SSH control sockets: a socket path must stay under 108 bytes,
    which a ControlPath under a deep cache directory does not."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"fleetbuild-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise FleetbuildError(f"{path} must be a directory owned by you with mode 0700 (it holds SSH sockets)")
    return path
