"""Building on hosts: the pipeline under `matrix build` and `publish` (pipeline.py), staging jobs
into worker specs, the inventory's hosts and their probed facts, the build cache, the worker zipapp,
and dispatch/ (probe play, SSH sessions, scheduler, transport).

May import plugin, report, plan, models, store, config and the shared leaves; never devices or commands.
"""
