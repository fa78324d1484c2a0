"""Getting engines onto devices: `fleetbuild deploy` (push over each device's SSH session).

May import build (its host sessions and probe), store, report and the layers below them; the code
that runs on the devices themselves is in fleetbuild.remote.
"""
