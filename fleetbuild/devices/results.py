"""A deploy's result rows: one per device and model, with a line for stderr as soon as it is known."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fleetbuild.report.format import size_text


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
