"""`fleetbuild hosts probe`: every host's facts, and whether it fits its group's target;
`fleetbuild hosts list`: how each host is reached (as Ansible resolved it) and its cached facts."""
from __future__ import annotations

import argparse
import json
import time

from fleetbuild.commands import add_inventory_option, add_json_option
from fleetbuild.context import RunContext
from fleetbuild.errors import ExitCode
from fleetbuild.report.format import table


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    hosts = subparsers.add_parser("hosts", parents=[common], help="probe the build hosts",
                                  description="Inspect the inventory's build hosts.")
    actions = hosts.add_subparsers(dest="action", metavar="ACTION", required=True)
    probe = actions.add_parser(
        "probe", parents=[common], help="probe every host and check it against its group's target",
        description="Run the probe on every inventory host in one parallel Ansible run; show GPU, compute "
                    "capability, TensorRT, JetPack and Python, and flag hosts whose hardware does not match "
                    "their group's target. Facts are cached (matrix build refreshes them). Exit code 1 when "
                    "any host is unreachable or flagged.")
    add_inventory_option(probe)
    add_json_option(probe)
    probe.set_defaults(func=run_probe)
    listing = actions.add_parser(
        "list", parents=[common], help="the hosts, how each is reached, and their cached facts",
        description="List the inventory's hosts: the transport each gets (fleetbuild's ssh, local, or Ansible's "
                    "connection plugin) and why, the user, address, port and key Ansible resolved for it (from "
                    "ansible.cfg, ANSIBLE_* variables and the inventory; never a password), and the facts of "
                    "its last probe (no SSH).")
    add_inventory_option(listing)
    add_json_option(listing)
    listing.set_defaults(func=run_list)


def run_probe(ctx: RunContext) -> int:
    from fleetbuild.build.hostfacts import hardware_problem
    from fleetbuild.build.dispatch.probe import Prober

    config = ctx.optional_config()
    inventory = ctx.inventory(config)
    registry = config.targets if config is not None else ctx.plugins().targets()
    by_group = {t.inventory_group: t for t in registry}
    prober = Prober(inventory, ctx.cache_dir, ctx.env)
    try:
        states = prober.probe(list(inventory.hosts.values()))
    finally:
        prober.close()
    rows, data, bad = [], [], 0
    for name, state in states.items():
        facts, host = state.facts or {}, state.host
        targets = [by_group[g] for g in host.groups if g in by_group]
        problems = [state.problem] if state.problem else [
            f"{t.name}: {p}" for t in targets if (p := hardware_problem(facts, t))]
        bad += bool(problems)
        gpu = (facts.get("gpus") or [{}])[0]
        trt = ", ".join(f"{i['flavor']} {i['version']}" for i in facts.get("tensorrt") or [])
        jetpack = (facts.get("jetson") or {}).get("jetpack")
        status = "unreachable" if state.down else ("flagged" if problems else "ok")
        rows.append((name, ", ".join(host.groups), host.connection, gpu.get("name", ""),
                     gpu.get("compute_capability", ""), trt, jetpack or "", (facts.get("python") or {}).get("version", ""),
                     status, "; ".join(problems)))
        data.append({"host": name, "groups": list(host.groups), "status": status, "problems": problems,
                     "transport": host.connection, "why": host.link.why, "facts": facts})
    if ctx.output.json is not None:
        ctx.output.emit_json({"hosts": data})
    if ctx.output.json != "-":
        ctx.output.console.print(table(None, ("host", "groups", "transport", "GPU", "CC", "TensorRT", "JetPack",
                                              "Python", "status", "reason"), rows))
    return ExitCode.JOBS_FAILED if bad else ExitCode.OK


def run_list(ctx: RunContext) -> int:
    config = ctx.optional_config()
    inventory = ctx.inventory(config)
    rows, data = [], []
    now = time.time()
    for name, host in inventory.hosts.items():
        try:
            cached = json.loads((ctx.cache_dir / "facts" / f"{name}.json").read_text("utf-8"))
        except (OSError, ValueError):
            cached = None
        facts = (cached or {}).get("facts") or {}
        age = _age(now - cached["probed"]) if cached else "never probed"
        gpu = (facts.get("gpus") or [{}])[0]
        trt = ", ".join(f"{i['flavor']} {i['version']}" for i in facts.get("tensorrt") or [])
        link = host.link
        reached = link.problem or ((f"{link.user}@" if link.user else "") + host.address
                                   + (f":{link.port}" if link.port else "")
                                   + (f" (key {link.key_file})" if link.key_file else "")
                                   + (f", as {link.become_user}" if link.become_user else ""))
        rows.append((name, ", ".join(host.groups), host.connection if not link.problem else "refused",
                     reached, gpu.get("name", ""), gpu.get("compute_capability", ""), trt, age))
        data.append({"host": name, "groups": list(host.groups), "connection": host.connection,
                     "address": host.address, **link.shown(),
                     "probed": cached["probed"] if cached else None, "facts": facts or None})
    if ctx.output.json is not None:
        ctx.output.emit_json({"hosts": data})
    if ctx.output.json != "-":
        ctx.output.console.print(table(None, ("host", "groups", "transport", "reached as", "GPU", "CC", "TensorRT",
                                              "probed"), rows))
    return ExitCode.OK


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"
