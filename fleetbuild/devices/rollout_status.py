"""`rollout status`: the fleet's reports of a rollout, per phase, read from the store.

Each device's latest report (reports/<project>/<channel>/<device>.json) is checked against the key
that device first reported with (pinned in rollouts/<project>/device-keys.json, one object the
controller writes: trust on first use, or `deploy --install-agent` registers it): a report signed by
another key is refused as forged and counted as such. Devices are placed in phases by their cohort
value (the record's salt and their id), as they place themselves.
"""
from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fleetbuild.remote.rollout import cohort, phase_of
from fleetbuild.store.api import NotFound, PreconditionFailed


@dataclass
class PhaseStatus:
    index: int
    percent: float
    start: float | None
    targeted: int = 0            # devices known to the controller whose cohort falls in this phase
    reported: int = 0            # of them, devices with a report for this rollout
    healthy: int = 0             # installed the new version and passed the health gate
    rolled_back: int = 0         # installed it, failed the gate, restored the previous engine
    failed: int = 0              # could not install it (download, choice, store)
    silent: int = 0              # targeted, the phase started more than silent_after ago, no report
    reasons: Counter = field(default_factory=Counter)
    figures: dict = field(default_factory=lambda: {"p50_ms": [], "p99_ms": [], "watts": []})   # of healthy installs

    def medians(self) -> dict[str, float | None]:
        """The median over the phase's healthy devices of each gate figure (latency, power)."""
        import statistics

        return {name: round(statistics.median(values), 3) if values else None for name, values in self.figures.items()}

    @property
    def failure_rate(self) -> float:
        return (self.rolled_back + self.failed) / self.reported if self.reported else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.index + 1, "percent": self.percent, "start": self.start, "targeted": self.targeted,
                "reported": self.reported, "healthy": self.healthy, "rolled_back": self.rolled_back,
                "failed": self.failed, "silent": self.silent, "failure_rate": round(self.failure_rate, 4),
                "top_reasons": [[reason, count] for reason, count in self.reasons.most_common(3)],
                "median": self.medians()}


@dataclass
class RolloutStatus:
    record: dict[str, Any]
    phases: list[PhaseStatus]
    forged: list[str]                      # device ids whose report is not signed by their pinned key
    devices: int                           # devices known for the project

    def to_json(self) -> dict[str, Any]:
        keep = ("project", "channel", "version", "previous", "state", "sequence", "halt_at")
        return {**{k: self.record.get(k) for k in keep}, "devices": self.devices, "forged_reports": self.forged,
                "phases": [p.to_json() for p in self.phases]}


def keys_key(project: str) -> str:
    return f"rollouts/{project}/device-keys.json"


def collect(store: Any, record: dict[str, Any], now: float, silent_after: float = 3600.0,
            fleet_key: str | None = None) -> RolloutStatus:
    """The rollout's status from the latest report of every device. Reports `deploy` filed (signed
    with the fleet's key: the controller speaking for devices it pushed to) count when `fleet_key`
    (the minisign public key) verifies them."""
    project, channel = record["project"], record["channel"]
    pins, _ = _pins(store, project)
    prefix = f"reports/{project}/{channel}/"
    latest: dict[str, dict[str, Any]] = {}
    forged, new_pins = [], {}
    for key in store.list(prefix):
        device = key[len(prefix):-len(".json")] if key.endswith(".json") else None
        if not device or "/" in device:
            continue
        try:
            envelope = json.loads(store.read_bytes(key)[0])
            if envelope.get("signer") == "fleet":           # deploy's report about this device
                report = _fleet_verified(envelope, fleet_key)
                if report.get("device") != device:
                    raise ValueError("another device's report")
                latest[device] = report
                continue
            public = base64.b64decode(envelope["key"])
            report = _verified(envelope, public)
        except (NotFound, ValueError, KeyError, TypeError):
            forged.append(device)
            continue
        pinned = pins.get(device) or new_pins.get(device)
        if report.get("device") != device:                   # a report filed under another device's name
            forged.append(device)
            continue
        if pinned is None:
            new_pins[device] = envelope["key"]
        elif pinned != envelope["key"]:
            forged.append(device)
            continue
        latest[device] = report
    if new_pins:
        pin_keys(store, project, new_pins, replace=False)
        pins = {**pins, **new_pins}
    phases = [PhaseStatus(i, float(p["percent"]), p.get("start")) for i, p in enumerate(record["phases"])]
    for device in set(pins) | set(latest):
        phase = phases[phase_of(record, cohort(record["salt"], device))]
        if phase.start is None or phase.start > now:
            continue
        phase.targeted += 1
        report = latest.get(device)
        if report is None or report.get("rollout") != record["salt"]:
            if now - phase.start > silent_after:
                phase.silent += 1
            continue
        phase.reported += 1
        verdict, reason = _verdict(report, record["version"])
        setattr(phase, verdict, getattr(phase, verdict) + 1)
        if verdict == "healthy":
            for change in report.get("changes") or []:
                figures = (change.get("health") or {}).get("figures") or {}
                for name, values in phase.figures.items():
                    if isinstance(figures.get(name), (int, float)):
                        values.append(float(figures[name]))
        if reason:
            phase.reasons[reason[:200]] += 1
    return RolloutStatus(record, phases, sorted(forged), len(pins))


def _verdict(report: dict[str, Any], version: str) -> tuple[str, str]:
    changes = [c for c in report.get("changes") or [] if c.get("to") == version] or report.get("changes") or []
    for wanted in ("rolled back", "failed"):
        for item in changes:
            if item.get("verdict") == wanted:
                return wanted.replace(" ", "_"), str(item.get("error") or wanted)
    if report.get("error"):
        return "failed", str(report["error"])
    return "healthy", ""


def _verified(envelope: dict[str, Any], public: bytes) -> dict[str, Any]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(envelope["signature"]),
                                                          envelope["report"].encode("utf-8"))
    except InvalidSignature:
        raise ValueError("bad signature") from None
    report = json.loads(envelope["report"])
    if not isinstance(report, dict):
        raise ValueError("not a report")
    return report


def _fleet_verified(envelope: dict[str, Any], fleet_key: str | None) -> dict[str, Any]:
    from fleetbuild.remote.verify import SignatureError, verify_minisig

    if not fleet_key:
        raise ValueError("no fleet key to check a deploy report with")
    try:
        verify_minisig(envelope["report"].encode("utf-8"), envelope["signature"], fleet_key)
    except SignatureError as err:
        raise ValueError(str(err)) from None
    report = json.loads(envelope["report"])
    if not isinstance(report, dict):
        raise ValueError("not a report")
    return report


def file_deploy_reports(store: Any, signer: Any, project: str, channel: str, results: Any) -> int:
    """Each deployed device's result as its latest report of `channel` (signed with the fleet's key),
    so push and pull show up in one `rollout status`; the number filed. Nothing without a key."""
    import time

    from fleetbuild.store.publish import channel_version
    from fleetbuild.store.rollouts import read

    if signer is None:
        return 0
    record, _ = read(store, project, channel)
    version = channel_version(store, project, channel)       # what the deploy's channel pointed to
    by_device: dict[str, list] = {}
    for result in results:
        if result.status in ("installed", "unchanged", "failed"):
            by_device.setdefault(result.device, []).append(result)
    for device, rows in by_device.items():
        report = {"device": device, "project": project, "channel": channel, "source": "deploy",
                  "rollout": (record or {}).get("salt"), "sequence": (record or {}).get("sequence"),
                  "time": round(time.time(), 3),
                  "changes": [{"model": r.model, "to": version, "job_id": r.job_id,
                               "verdict": "healthy" if r.status in ("installed", "unchanged") else "failed",
                               **({"error": r.reason} if r.status == "failed" else {})} for r in rows]}
        text = json.dumps(report, sort_keys=True)
        envelope = {"report": text, "signer": "fleet",
                    "signature": signer.sign(text.encode(), f"fleetbuild deploy report {project} {device}")}
        store.write_bytes(f"reports/{project}/{channel}/{device}.json", json.dumps(envelope).encode())
    return len(by_device)


def _pins(store: Any, project: str) -> tuple[dict[str, str], str | None]:
    try:
        body, etag = store.read_bytes(keys_key(project))
    except NotFound:
        return {}, None
    return json.loads(body), etag


def pin_keys(store: Any, project: str, keys: dict[str, str], replace: bool = True) -> None:
    """Register devices' report keys with compare-and-swap (a concurrent writer's pins are merged,
    never lost). `replace`: deploy --install-agent reached each device over SSH, so its keys replace
    what a first report pinned; otherwise (trust on first use) a key already pinned stays."""
    for _ in range(8):
        pins, etag = _pins(store, project)
        merged = {**pins, **keys} if replace else {**keys, **pins}
        body = json.dumps(merged, indent=0, sort_keys=True).encode()
        try:
            if etag is None:
                store.write_bytes(keys_key(project), body, if_none_match=True)
            else:
                store.write_bytes(keys_key(project), body, if_match=etag)
            return
        except PreconditionFailed:
            continue
