"""fleetbuild's plugin system (pluggy). Third-party plugins import `hookimpl` from here."""
import pluggy

hookimpl = pluggy.HookimplMarker("fleetbuild")
hookspec = pluggy.HookspecMarker("fleetbuild")

__all__ = ["hookimpl", "hookspec"]
