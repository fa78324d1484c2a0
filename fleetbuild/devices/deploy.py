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
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fleetbuild.devices.installs import Installs, in_waves
from fleetbuild.devices.results import DeviceResult
from fleetbuild.devices.shipment import Shipment
from fleetbuild.errors import ConfigError, FleetbuildError
from fleetbuild.store.mirror import release_keys

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.context import RunContext

__all__ = ["DeviceResult", "deploy"]


def deploy(ctx: "RunContext", group: str, version: str | None, channel: str | None, models: Sequence[str],
           dest: str, public_key: str, canary: int = 0, serial: int = 0, dry_run: bool = False,
           notify: Callable[[str], None] = lambda line: None, keep_connections: bool = False,
           health: Sequence[str] = ()) -> list[DeviceResult]:
    """Deploy to every device of `group`; a result row per device and model. The SSH connections are
    closed at the end unless `keep_connections` (a dry run, then the deploy, reuse them). `health`:
    the health-gate arguments each device's pull runs with (--health, --health-cmd CMD, budgets)."""
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
        shipment = Shipment(store, mirror, index_keys, key_name, project, version, dest, channel, list(health))
        # one wave (no --canary, no --serial): each device installs as soon as its own probe is
        # in, so a slow or unreachable device holds up none of the others
        rollout = Installs(notify) if not (dry_run or canary or serial) else None
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
                    results += in_waves(states, plans, shipment, canary, serial, notify)
        finally:
            if rollout is not None:
                rollout.close()
            prober.close(keep_connections)
    order = {h.name: i for i, h in enumerate(devices)}
    results.sort(key=lambda r: (order.get(r.device, 0), wanted.index(r.model) if r.model in wanted else 0))
    return results


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
