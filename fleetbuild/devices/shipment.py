"""What one device of a deploy is sent, and its pulls run there: the release's store objects
(the index every time, objects named by content only when the device lacks them), its own facts and
presigned URLs under private names, and one batch of its host session that installs atomically."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fleetbuild.build.dispatch import shell
from fleetbuild.devices.results import DeviceResult
from fleetbuild.errors import FleetbuildError
from fleetbuild.store.mirror import mirror_objects

PRESIGN_SECONDS = 900            # presigned URLs for devices live 15 minutes


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
    health: list = field(default_factory=list)     # the pull's health-gate arguments (deploy --health ...)
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


def install_on(state: Any, name: str, plan: list, shipment: Shipment, rollout: Any) -> list[DeviceResult]:
    """Send one device what its pull needs and run the pulls there: one batch of its host session."""
    from fleetbuild.build.dispatch.session import Batch
    from fleetbuild.build.dispatch.transport import TransferError
    from fleetbuild.store.publish import entry_blobs
    from fleetbuild.store.blobs import blob_key

    objects: list[str] = []                     # by content: manifests (by build key) and blobs
    for _, _, entry in plan:              # golden samples only where the health gate runs them
        objects += [entry["manifest"]] + [blob_key(sha) for sha, _, what in entry_blobs(entry)
                                          if shipment.health or not what.startswith("golden")]
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
              "--out", shipment.dest.replace("{host}", name), "--mirror", *shipment.health, *extra]
             for model, _, _ in plan]
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
