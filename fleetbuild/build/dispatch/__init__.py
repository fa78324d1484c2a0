"""Dispatch: running the worker on build hosts: the probe play (probe.py, through ansible.py, the
only module importing ansible_runner), one persistent SSH master per host (transport.py, session.py),
the scheduler and the build run (run.py). Imports what fleetbuild.build may import."""
