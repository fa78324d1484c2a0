"""What the user sees: the event stream and the Reporter protocol (events.py), result records
(results.py), and the reporters: terminal (with live progress), JSON, GitHub Actions, HTML, and the
accuracy report.

Reporters read plan and result records; they import plan, models, config and the shared leaves,
never the dispatcher or the plugin manager.
"""
from fleetbuild.report.events import Reporter

__all__ = ["Reporter"]
