"""Result records: one JobResult per job of a build, and the RunSummary every reporter receives.

Per-job failures are records, never exceptions: a build goes on and reports them all at the end.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.plan.planner import Plan

OK_STATUSES = ("built", "cached")


def tensorrt_text(manifest: Mapping[str, Any]) -> str | None:
    """'tensorrt-rtx 1.7.1.116' from a manifest, or None."""
    trt = manifest.get("tensorrt") or {}
    return f"{trt.get('flavor', '?')} {trt.get('version', '?')}" if trt else None


@dataclass
class JobResult:
    job_id: str
    target: str
    status: str                       # built | cached | failed | invalid
    host: str | None = None
    seconds: float = 0.0
    worker_seconds: float | None = None   # the worker's own wall time on the host
    engine_size: int | None = None
    build_key: str | None = None
    tensorrt: str | None = None       # "flavor version" of the engine's builder (built and cached jobs)
    kind: str | None = None           # build | environment | spec | unreachable | transfer | invalid | no-host | interrupted
    reason: str | None = None
    attempts: int = 0
    log_tail: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Release:
    """A release index as written to the store, and where."""

    index: Mapping[str, Any]
    key: str                          # store key of index.json
    url: str                          # the store URL + key
    channel: str | None = None
    signed: bool = False


@dataclass(frozen=True)
class RunSummary:
    """What a `matrix plan` (results None) or `matrix build` run ended with."""

    command: str                                  # plan | build
    plan: "Plan"
    results: Sequence[JobResult] | None = None
    release: Release | None = None

    def counts(self) -> dict[str, int]:
        """built, cached, failed and invalid jobs (a plan counts only invalid ones)."""
        if self.results is None:
            return {"built": 0, "cached": 0, "failed": 0, "invalid": len(self.plan.invalid)}
        statuses = [r.status for r in self.results]
        return {"built": statuses.count("built"), "cached": statuses.count("cached"),
                "failed": sum(s not in OK_STATUSES and s != "invalid" for s in statuses),
                "invalid": statuses.count("invalid")}

    @property
    def ok(self) -> bool:
        if self.results is None:
            return not self.plan.invalid
        return all(r.status in OK_STATUSES for r in self.results)

