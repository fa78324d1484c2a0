"""`fleetbuild deploy --install-agent`: put the rollout agent on a group of devices over Ansible.

Each device is probed like a deploy's (which brings the worker zipapp), then sent, in one batch of
its host session: the fleet's public key, a copy of the worker under a stable name (agent/
fleetbuild-remote in its work dir), and a systemd
service and timer whose ExecStart runs `fleetbuild-remote.pyz agent` with the device's own Python,
its inventory name as device id, and the options given. The batch copies the two unit files into
--systemd-dir, enables the timer where systemctl exists (saying so where it does not), and prints
the device's report-signing key, which the controller pins in the store (rollout status then
refuses reports about that device signed by any other key).
"""
from __future__ import annotations

import base64
import shlex
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fleetbuild.build.dispatch import shell
from fleetbuild.config.names import RULE, is_name
from fleetbuild.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.context import RunContext

UNIT, TIMER = "fleetbuild-agent.service", "fleetbuild-agent.timer"
KEY_MARK = "fleetbuild-device-key: "


@dataclass
class AgentInstall:
    device: str
    status: str                 # installed | installed, timer not enabled | failed | unreachable
    reason: str = ""

    def line(self) -> str:
        return f"agent {self.status} on {self.device}" + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class AgentSettings:
    store: str                  # what the devices read: a directory on them, or an http(s) base URL
    project: str
    channel: str
    models: Sequence[str]
    dest: str                   # the agent's --out ({host} becomes the device's name)
    every: str = "15min"
    jitter: float = 300.0
    health: Sequence[str] = ()
    report_to: str | None = None
    systemd_dir: str = "/etc/systemd/system"    # {host} becomes the device's name
    enable: bool = True                         # systemctl enable --now the timer


def install_agents(ctx: "RunContext", group: str, settings: AgentSettings, public_key: str,
                   notify: Callable[[str], None] = lambda line: None) -> list[AgentInstall]:
    from fleetbuild.build.dispatch.probe import Prober
    from fleetbuild.build.dispatch.session import Batch
    from fleetbuild.devices.rollout_status import pin_keys

    config = ctx.config()
    inventory = ctx.inventory(config)
    devices = sorted(inventory.group(group), key=lambda h: h.name)
    if not devices:
        raise ConfigError(str(inventory.path), group, f"inventory group '{group}' has no hosts",
                          "add the devices to that group, or name another with --group")
    results: list[AgentInstall] = []
    keys: dict[str, str] = {}
    stopping = threading.Event()
    with tempfile.TemporaryDirectory(prefix="fleetbuild-agent-") as tmp:
        prober = Prober(inventory, ctx.cache_dir, ctx.env, notify=notify)
        try:
            for state in prober.probe(devices).values():
                name = state.host.name
                if not is_name(name):               # it becomes the agent's --device-id: a store key
                    results.append(AgentInstall(name, "failed", f"'{name}' cannot be a device id: use {RULE} "
                                                "(rename the host in the inventory, keep its address)"))
                    notify(results[-1].line())
                    continue
                if state.problem:
                    results.append(AgentInstall(name, "unreachable" if state.down else "failed", state.problem))
                    notify(results[-1].line())
                    continue
                local = Path(tmp) / name
                (local / "agent").mkdir(parents=True)
                (local / "agent" / "fleetbuild.pub").write_text(public_key, encoding="utf-8")
                agent_dir = f"{state.workdir}/agent"
                unit, timer = units(settings, name, state.host.python, agent_dir)
                (local / "agent" / UNIT).write_text(unit, encoding="utf-8")
                (local / "agent" / TIMER).write_text(timer, encoding="utf-8")
                out = settings.dest.replace("{host}", name)
                systemd_dir = settings.systemd_dir.replace("{host}", name)
                worker, fresh = f"{agent_dir}/fleetbuild-remote", f"{agent_dir}/fleetbuild-remote.new"
                line = " && ".join([               # the probe's worker (a zipapp or its unpacked tree), copied
                    shell.words(["rm", "-rf", fresh]), shell.words(["cp", "-R", state.worker, fresh]),
                    shell.words(["rm", "-rf", worker]), shell.words(["mv", fresh, worker]),
                    shell.words(["mkdir", "-p", systemd_dir]),
                    shell.words(["cp", f"{agent_dir}/{UNIT}", f"{agent_dir}/{TIMER}", systemd_dir]),
                    shell.words([state.host.python, worker, "device-key", "--out", out]),
                ])
                if settings.enable:
                    line += ("; if ! command -v systemctl >/dev/null 2>&1; then echo 'fleetbuild-timer: no systemctl'; "
                             f"elif systemctl daemon-reload && systemctl enable --now {TIMER}; then "
                             "echo 'fleetbuild-timer: enabled'; else echo 'fleetbuild-timer: systemctl failed'; fi")
                batch = Batch(f"batches/agent-{name}", line, local / "fetched", upload_root=local,
                              upload=["agent/fleetbuild.pub", f"agent/{UNIT}", f"agent/{TIMER}"])
                log = state.run_batch(batch, stopping)
                results.append(_result(name, log, keys))
                notify(results[-1].line())
        finally:
            prober.close(False)
    if keys:
        pin_keys(ctx.store(config), settings.project, keys)
    return results


def _result(name: str, log: str | None, keys: dict[str, str]) -> AgentInstall:
    if log is None:
        return AgentInstall(name, "unreachable", "lost the connection while installing")
    found = [line[len(KEY_MARK):].strip() for line in log.splitlines() if line.startswith(KEY_MARK)]
    if not found:
        said = [line for line in log.splitlines() if line.strip() and not line.startswith((shell.STATUS_MARK, shell.BATCH_DONE))]
        return AgentInstall(name, "failed", said[-1][:300] if said else "no output")
    try:
        if len(base64.b64decode(found[0], validate=True)) != 32:
            raise ValueError
    except ValueError:
        return AgentInstall(name, "failed", "the device printed no valid key")
    keys[name] = found[0]
    if "fleetbuild-timer: enabled" in log:
        return AgentInstall(name, "installed")
    if "fleetbuild-timer: systemctl failed" in log:
        return AgentInstall(name, "installed, timer not enabled", "systemctl could not enable it: see the device's "
                            "journal")
    if "fleetbuild-timer: no systemctl" in log:
        return AgentInstall(name, "installed, timer not enabled", "no systemctl on the device: run the service "
                            "from cron or your init system")
    return AgentInstall(name, "installed, timer not enabled", "--no-enable: units written, timer left to you")


def units(settings: AgentSettings, device: str, python: str, agent_dir: str) -> tuple[str, str]:
    """The service and timer of one device."""
    argv = [python, f"{agent_dir}/fleetbuild-remote", "agent", "--store", settings.store, "--project",
            settings.project, "--channel", settings.channel]
    for model in settings.models:
        argv += ["--model", model]
    argv += ["--public-key", f"{agent_dir}/fleetbuild.pub", "--out", settings.dest.replace("{host}", device),
             "--device-id", device, "--jitter", f"{settings.jitter:g}", *settings.health]
    if settings.report_to:
        argv += ["--report-to", settings.report_to]
    service = ("# written by fleetbuild deploy --install-agent\n[Unit]\n"
               "Description=fleetbuild agent: follow the engine rollout of this device's channel\n"
               "Wants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\n"
               f"ExecStart={systemd_command(argv)}\nNice=10\nIOSchedulingClass=idle\nTimeoutStartSec=1h\n")
    timer = ("# written by fleetbuild deploy --install-agent\n[Unit]\nDescription=fleetbuild agent cycle\n\n"
             f"[Timer]\nOnBootSec=5min\nOnUnitActiveSec={settings.every}\nRandomizedDelaySec=60\nPersistent=true\n\n"
             "[Install]\nWantedBy=timers.target\n")
    return service, timer


def systemd_command(argv: Sequence[str]) -> str:
    """An ExecStart line: each word double-quoted with systemd's escapes (backslash, quote, and % for
    its specifiers, $ for its variables), so no word is split or expanded."""
    def quoted(word: str) -> str:
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'
    return " ".join(quoted(word) for word in argv)


def parse_exec_start(line: str) -> list[str]:
    """The argv of an ExecStart line as written by systemd_command (for tests and `--dry-run`)."""
    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(line)]


def settings_from(args: Any, project: str) -> AgentSettings:
    from fleetbuild.errors import UsageError

    if not args.channel:
        raise UsageError("--install-agent follows a channel: give --channel NAME")
    if not args.agent_store:
        raise UsageError("--install-agent needs --agent-store: the store as the devices read it (a directory on "
                         "them, or an http(s) base URL of the store's keys)")
    return AgentSettings(args.agent_store, project, args.channel, tuple(args.model), args.dest, args.every,
                         args.jitter, tuple(args.health_arguments), args.report_to, args.systemd_dir,
                         not args.no_enable)
