"""The device installs of a deploy: started one by one as devices are probed, or wave by wave
(canary first, then batches of serial); a Ctrl-C stops those in flight and starts no more."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from fleetbuild.devices.results import DeviceResult
from fleetbuild.devices.shipment import Shipment, install_on

STOP_SECONDS = 30               # how long stopping the in-flight installs may take after Ctrl-C


@dataclass
class Installs:
    """The device installs of a deploy: started one by one, collected wave by wave; a Ctrl-C
    stops those in flight (each is atomic on the device: the engine it replaces stays until the new
    one is whole) and starts no more."""
    notify: Callable[[str], None] = lambda line: None   # a line per device as it ends, and the notices
    stopping: threading.Event = field(default_factory=threading.Event)
    inflight: dict = field(default_factory=dict)        # device -> (HostSession, Batch), while it runs
    started: dict = field(default_factory=dict)         # device -> (Future or None, plan), until finish()
    lock: threading.Lock = field(default_factory=threading.Lock)
    pool: ThreadPoolExecutor | None = None

    def start(self, state: Any, plan: list, shipment: "Shipment") -> None:
        """Install `plan` on the device of `state`, in a thread of the rollout's (cheap: callable
        from Ansible's event thread)."""
        name = state.host.name
        with self.lock:
            if self.stopping.is_set():
                self.started[name] = (None, plan)
                return
            if self.pool is None:
                self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="deploy")
            self.started[name] = (self.pool.submit(self._install, state, plan, shipment), plan)

    def _install(self, state: Any, plan: list, shipment: "Shipment") -> list[DeviceResult]:
        rows = install_on(state, state.host.name, plan, shipment, self)
        for row in rows:
            self.notify(row.line())
        return rows

    def finish(self) -> list[DeviceResult]:
        """Wait for the installs started since the last finish() (a Ctrl-C stops them); their results."""
        with self.lock:
            started, self.started = self.started, {}
        futures = [future for future, _ in started.values() if future is not None]
        try:
            while not self.stopping.is_set() and not all(f.done() for f in futures):
                wait(futures, timeout=0.2)          # short waits: a Ctrl-C lands here at once
        except KeyboardInterrupt:
            self.stop()
        if self.stopping.is_set():
            wait(futures, timeout=STOP_SECONDS)
        results: list[DeviceResult] = []
        for name, (future, plan) in sorted(started.items()):
            if future is not None and future.done():
                results += future.result()
                continue
            rows = [DeviceResult(name, m, j, "not started", "interrupted") if future is None else
                    DeviceResult(name, m, j, "interrupted", f"still installing after {STOP_SECONDS} s of stopping")
                    for m, j, _ in plan]
            for row in rows:
                self.notify(row.line())
            results += rows
        return results

    def stop(self, notice: str = "interrupted: stopping the installs in flight") -> None:
        """Stop the installs in flight and start no more."""
        self.notify(notice)
        with self.lock:
            self.stopping.set()
            running = list(self.inflight.values())
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(running)))) as pool:
            list(pool.map(lambda pair: pair[0].stop(pair[1], "install"), running))

    def close(self) -> None:
        """End the rollout; installs nobody waited for (an error elsewhere) are stopped first."""
        with self.lock:
            left = [future for future, _ in self.started.values() if future is not None and not future.done()]
        if left:
            self.stop("stopping the installs in flight")
            wait(left, timeout=STOP_SECONDS)
        if self.pool is not None:
            self.pool.shutdown(wait=False)


def in_waves(states: dict, plans: dict, shipment: Shipment, canary: int, serial: int,
              notify: Callable[[str], None]) -> list[DeviceResult]:
    """Deploy wave by wave (after every probe is in): `canary` devices first, the rollout stopping
    if any of them fails, then batches of `serial`."""
    names = sorted(plans)
    waves = [names[:canary]] if canary else []
    rest = names[canary:] if canary else names
    size = serial or len(rest) or 1
    waves += [rest[i:i + size] for i in range(0, len(rest), size)]
    results: list[DeviceResult] = []
    rollout = Installs(notify)
    try:
        for number, wave in enumerate(waves):
            if rollout.stopping.is_set():
                results += [DeviceResult(n, m, j, "not started", "interrupted") for n in wave
                            for m, j, _ in plans[n]]
                continue
            for name in wave:
                rollout.start(states[name], plans[name], shipment)
            results += rollout.finish()
            failed = [r for r in results if r.device in wave and r.status in ("failed", "unreachable")]
            if number == 0 and canary and failed and not rollout.stopping.is_set():
                notify(f"canary failed on {', '.join(sorted({r.device for r in failed}))}: the rollout stops")
                for later in waves[1:]:
                    results += [DeviceResult(n, m, j, "not started", "the canary failed") for n in later
                                for m, j, _ in plans[n]]
                break
    finally:
        rollout.close()
    return results
