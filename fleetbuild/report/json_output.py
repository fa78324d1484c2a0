"""--json [FILE]: the plan, or the build's results with counts and the release, as one document."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleetbuild.report.events import OutputOptions, Reporter

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.report.results import RunSummary


class JsonReporter(Reporter):
    """--json [FILE]: the plan, or the build's results with counts and the release."""

    def __init__(self, output: OutputOptions) -> None:
        self.output = output

    def run_finished(self, summary: "RunSummary") -> None:
        self.output.emit_json(summary_json(summary))


def summary_json(summary: "RunSummary") -> dict[str, Any]:
    if summary.results is None:
        return summary.plan.to_json()
    counts = summary.counts()
    data: dict[str, Any] = {"built": counts["built"], "cached": counts["cached"],
                            "failed": counts["failed"] + counts["invalid"], "invalid": counts["invalid"],
                            "results": [r.to_json() for r in summary.results]}
    if summary.release is not None:
        index = summary.release.index
        data["release"] = {"project": index["project"], "version": index["version"], "sequence": index["sequence"],
                           "index": summary.release.url, "channel": summary.release.channel}
    return data
