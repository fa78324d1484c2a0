"""`fleetbuild rollout start | advance | halt | resume | revert | status | check | grant`: phased
rollouts that devices follow by themselves (`fleetbuild-remote.pyz agent`), with the store as the
only thing they talk to. The controller signs records and reads reports; nothing is per device."""
from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from fleetbuild.commands import add_json_option
from fleetbuild.config.names import channel_argument, name_argument, version_argument
from fleetbuild.context import RunContext
from fleetbuild.errors import UsageError
from fleetbuild.store import rollouts
from fleetbuild.store.publish import channel_version

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """'90s', '30m', '6h', '2d' or plain seconds."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use e.g. 90s, 30m, 6h, 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def fraction(text: str) -> float:
    """'2%' or '2' -> 0.02; '0.5%' -> 0.005."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage: use e.g. 2%") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a percentage is between 0 and 100")
    return value / 100


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "rollout", parents=[common], help="phased rollouts devices follow from the store",
        description="Phased rollouts of a channel's release: a signed record in the store that every device's "
                    "agent (fleetbuild-remote.pyz agent, on a timer) reads to decide for itself whether it is in "
                    "the current phase. For fleets beyond what `deploy` reaches over SSH.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", parents=[common], help="start rolling a version out on a channel")
    _channel(start)
    start.add_argument("--version", dest="release_version", required=True, type=version_argument, metavar="V")
    start.add_argument("--from", dest="previous", type=version_argument, metavar="V",
                       help="the version it replaces (default: the one the channel points to)")
    start.add_argument("--phases", default="1,10,50,100", help="percentages of devices per phase (default 1,10,50,100)")
    start.add_argument("--every", type=duration, metavar="DURATION",
                       help="start each next phase this long after the one before (default: at `rollout advance`)")
    start.add_argument("--halt-at", type=fraction, default=0.02, metavar="PERCENT",
                       help="failure rate of a phase that halts the rollout (default 2%%)")
    start.set_defaults(func=run_start)
    for name, text in (("advance", "start the next phase now (done after the last)"),
                       ("halt", "stop devices that have not moved from moving"),
                       ("resume", "let a halted rollout go on"),
                       ("revert", "send every device back to the version the rollout replaces")):
        action = actions.add_parser(name, parents=[common], help=text)
        _channel(action)
        if name == "advance":
            action.add_argument("--force", action="store_true", help="widen even past a phase over its threshold")
            action.add_argument("--silent-after", type=duration, default=3600.0, metavar="DURATION")
        action.set_defaults(func=run_change, change=name)
    status = actions.add_parser("status", parents=[common], help="the fleet's reports of a rollout, per phase")
    _channel(status)
    status.add_argument("--silent-after", type=duration, default=3600.0, metavar="DURATION",
                        help="a device of a started phase with no report after this long is silent (default 1h)")
    add_json_option(status)
    status.set_defaults(func=run_status)
    check = actions.add_parser("check", parents=[common],
                               help="halt on failures, or advance when the current phase has soaked (for a schedule)")
    _channel(check)
    check.add_argument("--advance-after", type=duration, metavar="DURATION",
                       help="advance when the current phase started this long ago and is under its threshold")
    check.add_argument("--silent-after", type=duration, default=3600.0, metavar="DURATION")
    check.set_defaults(func=run_check)
    grant = actions.add_parser("grant", parents=[common],
                               help="a write-only, expiring URL for one device's reports (S3 stores)")
    _channel(grant)
    grant.add_argument("--device", required=True, type=name_argument("device"))
    grant.add_argument("--expires", type=duration, default=7 * 86400.0, metavar="DURATION",
                       help="how long it is valid (default and S3's maximum: 7d)")
    grant.add_argument("--out", required=True, metavar="FILE",
                       help="write the URL to FILE (mode 0600): the device's agent --report-url-file (it is a secret "
                            "while it lives, so it is never printed)")
    grant.set_defaults(func=run_grant)


def _channel(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channel", required=True, type=channel_argument, metavar="NAME")


def run_start(ctx: RunContext) -> int:
    config = ctx.config()
    store, project, args = ctx.store(config), config.project.name, ctx.args
    if not store.exists(f"releases/{project}/{args.release_version}/index.json"):
        raise UsageError(f"release {project} {args.release_version} is not in the store {store.url}: publish it first")
    previous = args.previous or channel_version(store, project, args.channel)
    if previous == args.release_version:
        raise UsageError(f"channel {args.channel} already points to {previous}: nothing to roll out")
    record = rollouts.start(store, ctx.signer(config), project, args.channel, args.release_version, previous,
                            rollouts.parse_phases(args.phases), args.every, args.halt_at)
    ctx.output.err.print("started " + rollouts.describe(record, time.time()), markup=False)
    return 0


def run_change(ctx: RunContext) -> int:
    config = ctx.config()
    store, signer, project, args = ctx.store(config), ctx.signer(config), config.project.name, ctx.args
    if args.change == "advance":
        update = _guarded_advance(store, args.force, args.silent_after, ctx.public_key(config))
    else:
        update = rollouts.set_state({"halt": "halted", "resume": "running", "revert": "reverted"}[args.change])
    record = rollouts.change(store, signer, project, args.channel, update)
    if record["state"] == "done":
        _point_channel(store, signer, record)
    ctx.output.err.print(f"{args.change}: " + rollouts.describe(record, time.time()), markup=False)
    return 0


def _guarded_advance(store: Any, force: bool, silent_after: float, fleet_key: str | None) -> Any:
    from fleetbuild.devices.rollout_status import collect

    def update(record: dict[str, Any], now: float) -> dict[str, Any]:
        if not force:
            for phase in collect(store, record, now, silent_after, fleet_key).phases:
                if phase.start is not None and phase.start <= now and phase.failure_rate > record["halt_at"]:
                    raise rollouts.RolloutRefused(
                        f"phase {phase.index + 1} ({phase.percent:g} %) fails {100 * phase.failure_rate:.1f} % of its "
                        f"devices, over the rollout's {100 * record['halt_at']:g} %: see `fleetbuild rollout status`; "
                        "halt or revert it, or --force")
        return rollouts.advance(record, now)
    return update


def run_status(ctx: RunContext) -> int:
    from fleetbuild.devices.rollout_status import collect

    config = ctx.config()
    store = ctx.store(config)
    record, _ = rollouts.read(store, config.project.name, ctx.args.channel)
    if record is None:
        raise UsageError(f"channel {ctx.args.channel} of {config.project.name} has no rollout")
    status = collect(store, record, time.time(), ctx.args.silent_after, ctx.public_key(config))
    if ctx.output.json:
        ctx.output.emit_json(status.to_json())
        return 0
    print_status(ctx, status)
    return 0


def print_status(ctx: RunContext, status: Any) -> None:
    out = ctx.output.err
    out.print(rollouts.describe(status.record, time.time()) + f"; {status.devices} devices known", markup=False)
    for phase in status.phases:
        when = "not started" if phase.start is None or phase.start > time.time() else \
            time.strftime("started %Y-%m-%d %H:%M", time.localtime(phase.start))
        out.print(f"  phase {phase.index + 1} ({phase.percent:g} %, {when}): targeted {phase.targeted}, reported "
                  f"{phase.reported}, healthy {phase.healthy}, rolled back {phase.rolled_back}, failed {phase.failed}, "
                  f"silent {phase.silent}", markup=False)
        medians = {k: v for k, v in phase.medians().items() if v is not None}
        if medians:
            out.print("    median of healthy devices: " + ", ".join(
                f"{k.replace('_ms', '')} {v:g} ms" if k.endswith("_ms") else f"{v:g} W" for k, v in medians.items()),
                markup=False)
        for reason, count in phase.reasons.most_common(3):
            out.print(f"    {count} x {reason}", markup=False)
    if status.forged:
        out.print(f"  refused {len(status.forged)} report(s) not signed by their device's key: "
                  + ", ".join(status.forged[:5]), markup=False)


def run_check(ctx: RunContext) -> int:
    from fleetbuild.devices.rollout_status import collect

    config = ctx.config()
    store, signer, project, args = ctx.store(config), ctx.signer(config), config.project.name, ctx.args
    record, _ = rollouts.read(store, project, args.channel)
    if record is None or record["state"] != "running":
        ctx.output.err.print(f"check: nothing to do ({'no rollout' if record is None else record['state']})",
                             markup=False)
        return 0
    now = time.time()
    started = [p for p in collect(store, record, now, args.silent_after, ctx.public_key(config)).phases
               if p.start is not None and p.start <= now]
    over = [p for p in started if p.failure_rate > record["halt_at"]]
    if over:
        record = rollouts.change(store, signer, project, args.channel, rollouts.set_state("halted"))
        ctx.output.err.print(f"check: halted: phase {over[0].index + 1} fails {100 * over[0].failure_rate:.1f} % "
                             f"(threshold {100 * record['halt_at']:g} %)", markup=False)
        return 1
    if args.advance_after is not None and started and now - started[-1].start >= args.advance_after:
        record = rollouts.change(store, signer, project, args.channel, rollouts.advance)
        if record["state"] == "done":
            _point_channel(store, signer, record)
        ctx.output.err.print("check: advanced: " + rollouts.describe(record, now), markup=False)
        return 0
    ctx.output.err.print("check: ok: " + rollouts.describe(record, now), markup=False)
    return 0


def run_grant(ctx: RunContext) -> int:
    from fleetbuild.remote.reports import report_key

    config = ctx.config()
    store = ctx.store(config)
    key = report_key(config.project.name, ctx.args.channel, ctx.args.device)
    presign = getattr(store, "presigned_put", None)
    if presign is None:
        raise UsageError(f"{store.url} cannot make upload grants: give the device a directory of the store's "
                         f"reports/ tree instead (agent --report-to), writable by it alone")
    if ctx.args.expires > 7 * 86400:
        raise UsageError("--expires: S3 presigned URLs last 7 days at most: renew the grant (deploy it again)")
    url = presign(key, int(ctx.args.expires))
    _write_secret(ctx.args.out, url + "\n")
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + ctx.args.expires))
    ctx.output.err.print(f"wrote {ctx.args.out}: device {ctx.args.device} may write {key} until {until} "
                         "(nothing else; give it to the agent as --report-url-file)", markup=False)
    return 0


def _write_secret(path: str, text: str) -> None:
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".grant-", dir=folder)          # mkstemp: mode 0600
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as err:
        raise UsageError(f"--out {path}: cannot write it: {err.strerror or err}") from None


def _point_channel(store: Any, signer: Any, record: dict[str, Any]) -> None:
    """A finished rollout: the channel itself points to the new version (for pull --channel)."""
    from fleetbuild.store.publish import set_channel

    index = json.loads(store.read_bytes(f"releases/{record['project']}/{record['version']}/index.json")[0])
    set_channel(store, record["project"], record["channel"], index, signer)
