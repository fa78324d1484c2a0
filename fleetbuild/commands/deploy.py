"""`fleetbuild deploy`: a release onto a group of devices (see fleetbuild/devices/deploy.py)."""
from __future__ import annotations

import argparse
from typing import Any

from fleetbuild.commands import add_inventory_option, add_json_option, add_keep_connections_option
from fleetbuild.context import RunContext
from fleetbuild.errors import ExitCode, UsageError
from fleetbuild.config.names import channel_argument, name_argument, version_argument
from fleetbuild.report.format import size_text, table


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "deploy", parents=[common], help="install a release's engines on a group of inventory devices",
        description="Probe every device of an inventory group, choose the engine that fits each (the device's own "
                    "rules), send it what it needs and let it pull: signature and hashes checked on the device, "
                    "atomic install, previous engine kept. Exit code 1 when a device failed.")
    parser.add_argument("--group", required=True, help="inventory group of the devices")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", dest="release_version", type=version_argument, metavar="V")
    which.add_argument("--channel", type=channel_argument, metavar="NAME")
    parser.add_argument("--model", action="append", default=[], type=name_argument("model"),
                        help="only this model (repeatable; default: all)")
    parser.add_argument("--dest", required=True, metavar="DIR",
                        help="engine directory on the devices ({host} in it becomes the device's inventory name)")
    parser.add_argument("--public-key", metavar="FILE",
                        help="minisign public key (default: the public half of the configured signing key)")
    parser.add_argument("--canary", type=int, default=0, metavar="N",
                        help="deploy to N devices first and stop if any of them fails")
    parser.add_argument("--serial", type=int, default=0, metavar="N", help="then N devices at a time (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="show each device's choice; install nothing")
    gate = parser.add_argument_group("health gate", "run on each device after its install, as `pull --health` does: "
                                     "a failure restores its previous engine and fails that device")
    gate.add_argument("--health", action="store_true",
                      help="load the engine with the device's TensorRT and run the release's golden samples")
    gate.add_argument("--health-cmd", metavar="CMD", help="also run CMD on the device (argv, no shell)")
    gate.add_argument("--health-timeout", type=float, metavar="SECONDS")
    gate.add_argument("--health-runs", type=int, metavar="N")
    gate.add_argument("--max-latency-ms", type=float, metavar="MS")
    gate.add_argument("--max-watts", type=float, metavar="W")
    gate.add_argument("--max-slowdown", type=float, metavar="PERCENT")
    agent = parser.add_argument_group("agent", "--install-agent: instead of installing engines, put the rollout "
                                      "agent on each device (a systemd service and timer running "
                                      "fleetbuild-remote.pyz agent) for --channel and the --model list, and register "
                                      "each device's report key")
    agent.add_argument("--install-agent", action="store_true", help="install the agent instead of engines")
    agent.add_argument("--agent-store", metavar="URL",
                       help="the store as devices read it: a directory on them, or an http(s) base URL of its keys")
    agent.add_argument("--every", default="15min", metavar="SPAN", help="how often the timer runs (systemd, 15min)")
    agent.add_argument("--jitter", type=float, default=300.0, metavar="SECONDS")
    agent.add_argument("--report-to", metavar="DIR", help="where the agents leave reports (a directory on them)")
    agent.add_argument("--systemd-dir", default="/etc/systemd/system", metavar="DIR",
                       help="where the unit files go ({host} becomes the device's name)")
    agent.add_argument("--no-enable", action="store_true", help="write the units, do not run systemctl")
    add_keep_connections_option(parser, "devices")
    add_inventory_option(parser)
    add_json_option(parser, "the per-device results as JSON")
    parser.set_defaults(func=run)


def run(ctx: RunContext) -> int:
    from fleetbuild.devices.deploy import deploy

    args = ctx.args
    if args.canary < 0 or args.serial < 0:
        raise UsageError("--canary and --serial take a number of devices (0 or more)")
    config = ctx.config()
    public = ctx.public_key(config)
    if public is None:
        raise UsageError("no public key for the devices to check the release with: pass --public-key")
    if args.install_agent:
        return run_install_agent(ctx, public)
    results = deploy(ctx, args.group, args.release_version, args.channel, args.model, args.dest, public,
                     args.canary, args.serial, args.dry_run,
                     lambda line: ctx.output.err.print(line, markup=False, highlight=False), args.keep_connections,
                     health_arguments(args))
    if args.channel and not args.dry_run:      # push and pull in one `rollout status`
        from fleetbuild.devices.rollout_status import file_deploy_reports

        file_deploy_reports(ctx.store(config), ctx.signer(config), config.project.name, args.channel, results)
    if ctx.output.json is not None:
        ctx.output.emit_json({"results": [r.to_json() for r in results]})
    if ctx.output.json != "-":
        ctx.output.console.print(table(None, ("device", "model", "engine", "result", "reason"),
                                       [(r.device, r.model, r.job_id or "", r.status, r.reason) for r in results]))
        counts = {s: sum(r.status == s for r in results) for s in dict.fromkeys(r.status for r in results)}
        sent = {r.device: r.sent_bytes for r in results}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no devices"
        if not args.dry_run and results:
            reached = sum(1 for n in sent.values() if n)
            summary += f"; sent {size_text(sum(sent.values()))} to {reached} device{'' if reached == 1 else 's'}"
        ctx.output.console.print(summary, markup=False)
    if any(r.status == "interrupted" or r.reason == "interrupted" for r in results):
        return ExitCode.INTERRUPTED
    bad = ("failed", "unreachable", "not started")
    return ExitCode.JOBS_FAILED if any(r.status in bad for r in results) else ExitCode.OK


def health_arguments(args: Any) -> list[str]:
    """The device pull's health-gate arguments from deploy's options (none without --health/-cmd)."""
    if not (args.health or args.health_cmd):
        return []
    found = ["--health"]
    for option in ("health_cmd", "health_timeout", "health_runs", "max_latency_ms", "max_watts", "max_slowdown"):
        value = getattr(args, option)
        if value is not None:
            found += ["--" + option.replace("_", "-"), str(value)]
    return found


def run_install_agent(ctx: RunContext, public: str) -> int:
    from fleetbuild.devices.agent_install import install_agents, settings_from

    args = ctx.args
    args.health_arguments = health_arguments(args)
    settings = settings_from(args, ctx.config().project.name)
    results = install_agents(ctx, args.group, settings, public,
                             lambda line: ctx.output.err.print(line, markup=False, highlight=False))
    if ctx.output.json is not None:
        ctx.output.emit_json({"results": [{"device": r.device, "status": r.status, "reason": r.reason}
                                          for r in results]})
    bad = [r for r in results if r.status in ("failed", "unreachable")]
    return ExitCode.JOBS_FAILED if bad else ExitCode.OK
