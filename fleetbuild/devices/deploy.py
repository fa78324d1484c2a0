"""`fleetbuild deploy`: roll a release out to a group of devices.

Each device is probed like a build host (one Ansible play; its probe command installs the worker
where it is missing), the release is checked on the controller, and the engine each device should
get is chosen from its facts with the device's own rules (remote/choose.py). The device is then sent
what its pull needs as one batch of its host session (one round trip; a dropped connection does not
stop an install halfway): the index and its signature every time (a release can be republished
under its version), the manifests, blobs and public key only when the device lacks them (their
names fix their content). It runs the worker's `pull` against that copy, which checks the signature
and every hash again and installs atomically, keeping the previous engine. By default each device
installs as soon as its own probe is in (a slow or unreachable device holds up no other); with
`canary` or `serial`, devices go in waves after every probe is in: `canary` devices first (the
rollout stops if any of them fails), then batches of `serial`. An unreachable device is reported
and the others go on.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fleetbuild.build.dispatch import shell
from fleetbuild.errors import ConfigError, FleetbuildError
from fleetbuild.report.events import size_text
from fleetbuild.store.mirror import mirror_objects, release_keys

PRESIGN_SECONDS = 900            # presigned URLs for devices live 15 minutes

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.context import RunContext


@dataclass
class DeviceResult:
    device: str
    model: str
    job_id: str | None
    status: str        # installed | unchanged | would install | failed | unreachable | interrupted | not started
    reason: str = ""
    sent_bytes: int = 0         # file bytes sent to the device for this deploy (all its models together)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for a device's model as soon as its result is known (the table comes at the end)."""
        what = self.job_id or self.model
        if self.status in ("installed", "unchanged", "would install"):
            sent = f" ({size_text(self.sent_bytes)} sent)" if self.sent_bytes and self.status == "installed" else ""
            return f"{self.status} {what} on {self.device}{sent}"
        reason = self.reason[len("unreachable: "):] if self.reason.startswith("unreachable: ") else self.reason
        return f"{self.status.upper()} {what} on {self.device}: {reason}"


def deploy(ctx: "RunContext", group: str, version: str | None, channel: str | None, models: Sequence[str],
           dest: str, public_key: str, canary: int = 0, serial: int = 0, dry_run: bool = False,
           notify: Callable[[str], None] = lambda line: None, keep_connections: bool = False) -> list[DeviceResult]:
    """Deploy to every device of `group`; a result row per device and model. The SSH connections are
    closed at the end unless `keep_connections` (a dry run, then the deploy, reuse them)."""
    from fleetbuild.build.dispatch.probe import Prober
    from fleetbuild.remote.pull import PullError, read_release

    config = ctx.config()
    store = ctx.store(config)
    inventory = ctx.inventory(config)
    devices = sorted(inventory.group(group), key=lambda h: h.name)
    if not devices:
        raise ConfigError(str(inventory.path), group, f"inventory group '{group}' has no hosts",
                          "add the devices to that group, or name another with --group")
    project = config.project.name
    results: list[DeviceResult] = []
    with tempfile.TemporaryDirectory(prefix="fleetbuild-deploy-") as tmp:
        mirror = Path(tmp) / "store"          # uploaded as <work dir>/store on each device
        mirror.mkdir()
        version, index_keys = release_keys(store, mirror, project, version, channel)
        try:
            index = read_release(str(mirror), project, version, public_key, str(mirror / "state"))
        except PullError as err:
            raise FleetbuildError(str(err)) from None
        key_name = f"keys/{hashlib.sha256(public_key.encode()).hexdigest()[:16]}.pub"   # by content: never stale
        (mirror / "keys").mkdir()
        (mirror / key_name).write_text(public_key, encoding="utf-8")
        wanted = list(models) or sorted({job.split("/")[0] for job in index["entries"]})
        shipment = Shipment(store, mirror, index_keys, key_name, project, version, dest, channel)
        # one wave (no --canary, no --serial): each device installs as soon as its own probe is
        # in, so a slow or unreachable device holds up none of the others
        rollout = Rollout(notify) if not (dry_run or canary or serial) else None
        plans: dict[str, list[tuple[str, str, dict]]] = {}
        lock = threading.Lock()

        def probed(state: Any) -> None:
            rows, plan = _choose_for(state, index, wanted, dry_run)
            for row in rows:
                notify(row.line())
            with lock:
                results.extend(rows)
                if plan:
                    plans[state.host.name] = plan
            if plan and rollout is not None:
                rollout.start(state, plan, shipment)

        prober = Prober(inventory, ctx.cache_dir, ctx.env, notify=notify)
        try:
            try:
                states = prober.probe(devices, on_probed=probed)
            except KeyboardInterrupt:
                if rollout is None:
                    raise
                rollout.stop()
                results += rollout.finish()
                done = {r.device for r in results}
                for row in [DeviceResult(h.name, m, None, "not started", "interrupted") for h in devices
                            if h.name not in done for m in wanted]:
                    notify(row.line())
                    results.append(row)
            else:
                if rollout is not None:
                    results += rollout.finish()
                elif not dry_run and plans:
                    results += _roll_out(states, plans, shipment, canary, serial, notify)
        finally:
            if rollout is not None:
                rollout.close()
            prober.close(keep_connections)
    order = {h.name: i for i, h in enumerate(devices)}
    results.sort(key=lambda r: (order.get(r.device, 0), wanted.index(r.model) if r.model in wanted else 0))
    return results


@dataclass
class Shipment:
    """What every device of a rollout gets: the release's store objects (mirrored under `mirror`),
    the public key (`key_name` under mirror), and where to install. A deploy by `channel` has the
    device resolve the channel from the (signed) channel file sent with the release, so its
    `installed` says which channel the engine came from."""
    store: Any
    mirror: Path
    keys: list[str]
    key_name: str
    project: str
    version: str
    dest: str
    channel: str | None = None
    tag: str = field(default_factory=lambda: f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    _locks: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def mirrored(self, keys: Sequence[str]) -> list[str]:
        """mirror_objects, once per key for the whole rollout: the devices of a wave that need the
        same engine wait for one copy of it instead of each copying it again."""
        found = []
        for key in dict.fromkeys(keys):
            with self._lock:
                lock = self._locks.setdefault(key, threading.Lock())
            with lock:
                found += mirror_objects(self.store, self.mirror, [key])
        return found


STOP_SECONDS = 30               # how long stopping the in-flight installs may take after Ctrl-C


@dataclass
class Rollout:
    """The device installs of a rollout: started one by one, collected wave by wave; a Ctrl-C
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
        rows = _deploy_one(state, state.host.name, plan, shipment, self)
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


def _choose_for(state: Any, index: dict, wanted: list[str], dry_run: bool) -> tuple[list[DeviceResult], list]:
    """A probed device's result rows decided without installing (unreachable, no engine fits, or
    a dry run's choice), and its plan: (model, job id, entry) to install."""
    from fleetbuild.remote.choose import NoMatch, choose

    name = state.host.name
    if state.problem:
        return [DeviceResult(name, m, None, "unreachable" if state.down else "failed", state.problem)
                for m in wanted], []
    rows, plan = [], []
    for model in wanted:
        try:
            job_id, entry, _ = choose(index, model, state.facts or {})
        except NoMatch as err:
            reason = str(err) + ("".join("; " + r for r in err.reasons) if err.reasons else "")
            rows.append(DeviceResult(name, model, None, "failed", reason))
            continue
        if dry_run:
            rows.append(DeviceResult(name, model, job_id, "would install"))
        else:
            plan.append((model, job_id, entry))
    return rows, plan


def _roll_out(states: dict, plans: dict, shipment: Shipment, canary: int, serial: int,
              notify: Callable[[str], None]) -> list[DeviceResult]:
    """Deploy wave by wave (after every probe is in): `canary` devices first, the rollout stopping
    if any of them fails, then batches of `serial`."""
    names = sorted(plans)
    waves = [names[:canary]] if canary else []
    rest = names[canary:] if canary else names
    size = serial or len(rest) or 1
    waves += [rest[i:i + size] for i in range(0, len(rest), size)]
    results: list[DeviceResult] = []
    rollout = Rollout(notify)
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


def _deploy_one(state: Any, name: str, plan: list, shipment: Shipment, rollout: Rollout) -> list[DeviceResult]:
    """Send one device what its pull needs and run the pulls there: one batch of its host session."""
    from fleetbuild.build.dispatch.session import Batch
    from fleetbuild.build.dispatch.transport import TransferError
    from fleetbuild.store.publish import entry_blobs
    from fleetbuild.store.blobs import blob_key

    objects: list[str] = []                     # by content: manifests (by build key) and blobs
    for _, _, entry in plan:
        objects += [entry["manifest"]] + [blob_key(sha) for sha, _, _ in entry_blobs(entry)]
    remote_store = f"{state.workdir}/store"
    store, mirror = shipment.store, shipment.mirror
    by_content = [shipment.key_name]
    # this device's own files, under unique names, gone from both ends after the batch: its facts
    # (the pull chooses with the facts the controller chose with, and does not probe again) and,
    # from a private bucket, its presigned URLs
    private = [_private_file(mirror, name, "facts", state.facts)]
    extra = ["--facts", f"{remote_store}/{private[0]}"]
    try:
        if hasattr(store, "presign"):           # private bucket: the device gets short-lived URLs only
            urls = {key: store.presign(key, PRESIGN_SECONDS) for key in dict.fromkeys(shipment.keys + objects)}
            private.append(_private_file(mirror, name, "urls", urls))
            always = []
            extra += ["--urls", f"{remote_store}/{private[-1]}"]
        else:
            # the index and channel files change under their names (a release can be republished)
            always = mirror_objects(store, mirror, shipment.keys)
            by_content += shipment.mirrored(objects)
    except FleetbuildError as err:
        _remove_local(mirror, private)
        return [DeviceResult(name, m, j, "failed", str(err)) for m, j, _ in plan]
    release = ["--channel", shipment.channel] if shipment.channel else ["--version", shipment.version]
    steps = [[state.host.python, state.worker, "pull", "--store", remote_store, "--project", shipment.project,
              *release, "--model", model, "--public-key", f"{remote_store}/{shipment.key_name}",
              "--out", shipment.dest.replace("{host}", name), "--mirror", *extra] for model, _, _ in plan]
    line = shell.sequence(steps, env=state.host.env, final="true")
    line += " ; rm -f " + " ".join(shell.path(f"{remote_store}/{f}") for f in private)
    # the device's copy keeps the engines it has installed (hard links: no extra space); one no
    # install has linked for a day is dropped
    line += (f" ; find {shell.path(remote_store + '/blobs')} -type f -links 1 -ctime +0 -exec rm -f {{}} + "
             "2>/dev/null; true")
    batch = Batch(f"batches/deploy-{shipment.tag}", line, mirror.parent / "fetched" / name, upload_root=mirror.parent,
                  upload=["store/" + f for f in always + private], by_content=["store/" + f for f in by_content])
    with rollout.lock:
        rollout.inflight[name] = (state, batch)
    try:
        log = state.run_batch(batch, rollout.stopping)
    except TransferError as err:
        return [DeviceResult(name, m, j, "unreachable", str(err), state.sent_bytes) for m, j, _ in plan]
    finally:
        with rollout.lock:
            rollout.inflight.pop(name, None)
        _remove_local(mirror, private)
    if log is None:
        return [DeviceResult(name, m, j, "unreachable", "lost the connection while installing", state.sent_bytes)
                for m, j, _ in plan]
    statuses = shell.statuses(log)
    lines = [line for line in log.splitlines() if line.strip()]
    said = [line.split("pull: ", 1)[1] for line in lines if line.startswith("fleetbuild-remote: pull:")]
    results, failures = [], 0                    # the n-th failed step said the n-th "pull:" line
    for step, (model, job_id, _) in enumerate(plan):
        if statuses.get(step) == 0:
            unchanged = any(line.startswith(f"unchanged: {job_id}") for line in lines)
            results.append(DeviceResult(name, model, job_id, "unchanged" if unchanged else "installed",
                                        sent_bytes=state.sent_bytes))
        elif rollout.stopping.is_set():
            results.append(DeviceResult(name, model, job_id, "interrupted", "stopped before it finished: the "
                                        "engine it had is still in place", state.sent_bytes))
        else:
            reason = said[min(failures, len(said) - 1)] if said else (lines[-1][:300] if lines else "no output")
            results.append(DeviceResult(name, model, job_id, "failed", reason, state.sent_bytes))
            failures += 1
    return results


def _private_file(mirror: Path, device: str, kind: str, data: Any) -> str:
    """Write `data` as JSON under a name of its own (mode 0600); its name under `mirror`."""
    name = f"{kind}-{hashlib.sha256(device.encode()).hexdigest()[:12]}-{secrets.token_hex(8)}.json"
    descriptor = os.open(mirror / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return name


def _remove_local(mirror: Path, names: list[str]) -> None:
    for name in names:
        (mirror / name).unlink(missing_ok=True)
