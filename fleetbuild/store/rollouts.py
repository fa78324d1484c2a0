"""Rollout records in the store: the controller's half of fleetbuild.remote.rollout.

Every change (start, advance, halt, resume, revert, done) re-signs the whole record with a higher
sequence and writes it with compare-and-swap, so two controllers never lose each other's change and
a device never acts on a record older than one it has seen. Nothing here is per device: the fleet
reads the record and decides for itself.
"""
from __future__ import annotations

import json
import secrets
import time
from typing import Any, Sequence

from fleetbuild.config.names import check_name, check_version
from fleetbuild.errors import UsageError
from fleetbuild.remote.rollout import STATES, current_percent, record_key
from fleetbuild.store.api import NotFound, PreconditionFailed

MAX_ATTEMPTS = 16


class RolloutRefused(UsageError):
    """The change cannot be made (no rollout, a finished one, a phase over its failure threshold)."""


def parse_phases(text: str) -> list[float]:
    """'1,10,50,100' -> [1.0, 10.0, 50.0, 100.0]: increasing, in (0, 100], ending at 100."""
    try:
        phases = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--phases {text!r}: give percentages separated by commas, e.g. 1,10,50,100") from None
    if not phases or phases[-1] != 100 or any(not 0 < p <= 100 for p in phases) or \
            any(b <= a for a, b in zip(phases, phases[1:])):
        raise UsageError(f"--phases {text!r}: percentages must increase, lie in (0, 100] and end at 100")
    return phases


def read(store: Any, project: str, channel: str) -> tuple[dict[str, Any] | None, str | None]:
    """(record, etag) of the channel's rollout, (None, None) when there is none. The record is read
    as the controller wrote it (its own store); devices check the signature."""
    try:
        body, etag = store.read_bytes(record_key(project, channel))
    except NotFound:
        return None, None
    return json.loads(json.loads(body)["record"]), etag


def write(store: Any, signer: Any, record: dict[str, Any], etag: str | None) -> dict[str, Any]:
    """Sign and write `record` in place of the one read with `etag` (None: there was none)."""
    if signer is None:
        raise UsageError("a rollout record must be signed (devices refuse unsigned ones): set [signing] key "
                         "or FLEETBUILD_SIGNING_KEY")
    text = json.dumps(record, indent=1, sort_keys=True)
    comment = (f"fleetbuild rollout {record['project']} {record['channel']} {record['version']} "
               f"{record['state']} sequence {record['sequence']}")
    body = json.dumps({"record": text, "signature": signer.sign(text.encode(), comment)}, indent=1).encode()
    key = record_key(record["project"], record["channel"])
    if etag is None:
        store.write_bytes(key, body, if_none_match=True)
    else:
        store.write_bytes(key, body, if_match=etag)
    return record


def change(store: Any, signer: Any, project: str, channel: str, update: Any, now: float | None = None) -> dict[str, Any]:
    """Apply `update(record, now)` (which returns the new record or raises RolloutRefused) with
    compare-and-swap, retrying when another controller changed the record meanwhile."""
    for _ in range(MAX_ATTEMPTS):
        record, etag = read(store, project, channel)
        if record is None:
            raise RolloutRefused(f"channel {channel} of {project} has no rollout: start one with "
                                 f"`fleetbuild rollout start --channel {channel} --version V`")
        stamp = time.time() if now is None else now
        new = update(dict(record), stamp)
        new.update(sequence=record["sequence"] + 1, updated=round(stamp, 3))
        try:
            return write(store, signer, new, etag)
        except PreconditionFailed:
            continue
    raise RolloutRefused(f"the rollout of {channel} kept changing under this command ({MAX_ATTEMPTS} tries)")


def start(store: Any, signer: Any, project: str, channel: str, version: str, previous: str | None,
          phases: Sequence[float], every: float | None, halt_at: float, now: float | None = None) -> dict[str, Any]:
    """A new rollout of `version` (replacing `previous`) on `channel`: phase 1 starts now; with `every`
    (seconds), each next phase that much later, else at `rollout advance`."""
    check_name("project", project)
    check_name("channel", channel)
    check_version(version)
    stamp = time.time() if now is None else now
    old, etag = read(store, project, channel)
    if old is not None and old["state"] in ("running", "halted"):
        raise RolloutRefused(f"channel {channel} already has a rollout of {old['version']} ({old['state']}): "
                             "revert it or let it finish (rollout advance) first")
    record = {"schema": 1, "project": project, "channel": channel, "version": version, "previous": previous,
              "salt": secrets.token_hex(16), "halt_at": halt_at, "every": every, "state": "running",
              "phases": [{"percent": p, "start": round(stamp + i * every, 3) if every else
                          (round(stamp, 3) if i == 0 else None)} for i, p in enumerate(phases)],
              "sequence": (old["sequence"] + 1) if old else 1, "started": round(stamp, 3), "updated": round(stamp, 3)}
    try:
        return write(store, signer, record, etag)
    except PreconditionFailed:
        raise RolloutRefused(f"another controller changed the rollout of {channel} meanwhile: run the command again") \
            from None


def advance(record: dict[str, Any], now: float) -> dict[str, Any]:
    """The next phase starts now; past the last one, the rollout is done."""
    _running(record, "advance")
    phases = [dict(p) for p in record["phases"]]
    waiting = [p for p in phases if p["start"] is None or p["start"] > now]
    if not waiting:
        return dict(record, state="done")
    waiting[0]["start"] = round(now, 3)
    return dict(record, phases=phases)


def set_state(state: str) -> Any:
    assert state in STATES

    def update(record: dict[str, Any], now: float) -> dict[str, Any]:
        if record["state"] in ("reverted", "done"):
            raise RolloutRefused(f"the rollout of {record['version']} is {record['state']}: start a new one")
        if state == "running" and record["state"] != "halted":
            raise RolloutRefused(f"the rollout of {record['version']} is {record['state']}, not halted")
        if state == "reverted" and not record.get("previous"):
            raise RolloutRefused(f"the rollout of {record['version']} replaces no version: nothing to revert to")
        return dict(record, state=state)
    return update


def _running(record: dict[str, Any], what: str) -> None:
    if record["state"] != "running":
        raise RolloutRefused(f"cannot {what}: the rollout of {record['version']} is {record['state']}"
                             + (" (rollout resume first)" if record["state"] == "halted" else ""))


def describe(record: dict[str, Any], now: float) -> str:
    percent = current_percent(record, now)
    return (f"rollout of {record['project']} {record['version']} on {record['channel']} (replacing "
            f"{record.get('previous') or 'nothing'}): {record['state']}, {percent:g} % of devices, sequence "
            f"{record['sequence']}")
