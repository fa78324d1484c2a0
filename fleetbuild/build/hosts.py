"""Build hosts from an Ansible inventory (INI, YAML, directory or dynamic script), read with
Ansible's own InventoryManager: groups, connection settings and fleetbuild's per-host variables.

Per-host variables: fleetbuild_python (interpreter with TensorRT's bindings, default
/usr/bin/python3), fleetbuild_workdir (default ~/.cache/fleetbuild-worker), fleetbuild_slots
(parallel builds, default 1), fleetbuild_env (a mapping of environment variables for the worker,
e.g. LD_LIBRARY_PATH for tarball TensorRT installs).
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from fleetbuild.build.connection import Connection, ansible_config, config_file, resolve
from fleetbuild.errors import ConfigError

DEFAULT_PYTHON = "/usr/bin/python3"
ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")     # where a host is, not how it is reached
DEFAULT_WORKDIR = "~/.cache/fleetbuild-worker"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Host:
    name: str
    groups: tuple[str, ...]
    connection: str                      # the transport: "ssh", "local" or "ansible" (connection.py)
    address: str
    python: str = DEFAULT_PYTHON
    workdir: str = DEFAULT_WORKDIR
    slots: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    link: Connection = field(default_factory=lambda: Connection("ssh", "ssh", ""))   # as Ansible resolved it

    @property
    def local(self) -> bool:
        return self.connection == "local"

    @property
    def user(self) -> str | None:
        return self.link.user

    @property
    def port(self) -> int | None:
        return self.link.port


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: Mapping[str, Host]
    warnings: tuple[str, ...] = ()          # what Ansible warned about while reading it
    def group(self, name: str) -> list[Host]:
        return [h for h in self.hosts.values() if name in h.groups]

    def empty_group(self, name: str) -> str:
        """Why group `name` gives no host, naming the inventory and the groups it does have."""
        from fleetbuild.config.schema import did_you_mean

        found = sorted({g for h in self.hosts.values() for g in h.groups} - {"all", "ungrouped"})
        guess = did_you_mean(name, found)
        return (f"no hosts in inventory group '{name}' of {self.path} (its groups: {', '.join(found) or 'none'}"
                + (f"; {guess}" if guess else "") + ")")


class _Said:
    """What Ansible's Display would have printed while an inventory loaded."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.failures: list[tuple[str, BaseException]] = []

    def cause(self) -> str | None:
        """The parser failure that explains a refused inventory, in one line, plugin named."""
        for msg, exc in self.failures:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            deepest = exc
            while deepest.__cause__ is not None:
                deepest = deepest.__cause__
            detail = str(deepest).strip().splitlines()[0] if str(deepest).strip() else (lines[0] if lines else "")
            plugin = msg.split("'")[1] if msg.count("'") >= 2 else "inventory"
            if detail:
                return f"the {plugin} parser says: {detail}"
        return None


@contextlib.contextmanager
def ansible_warnings() -> Iterator[_Said]:
    """Collect Ansible's warnings instead of letting them reach stderr raw (only from this thread)."""
    from ansible.utils.display import Display

    said = _Said()
    display = Display()
    saved = display.warning, display.error_as_warning
    display.warning = lambda msg, *a, **k: said.warnings.append(str(msg))        # type: ignore[method-assign]
    display.error_as_warning = (                                                  # type: ignore[method-assign]
        lambda msg, exception, *a, **k: said.failures.append((str(msg), exception)))
    try:
        yield said
    finally:
        display.warning, display.error_as_warning = saved


def load_inventory(path: Path, shown: str | None = None, env: Mapping[str, str] | None = None) -> Inventory:
    """Parse `path` with Ansible's InventoryManager, and resolve each host's connection with Ansible's
    connection plugins, under the ansible.cfg and environment of this run (`env`, default the
    process's); a source it cannot parse is a ConfigError."""
    env = dict(os.environ if env is None else env)
    with ansible_config(env, config_file(env)):
        return _load_inventory(path, shown)


def _load_inventory(path: Path, shown: str | None) -> Inventory:
    import ansible.constants as C
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    shown = shown or str(path)
    C.INVENTORY_ANY_UNPARSED_IS_FAILED = True   # an unparsable inventory must not look empty
    C.TRANSFORM_INVALID_GROUP_CHARS = "ignore"  # target names like "orin-nx" are group names: no warning
    loader = DataLoader()
    with ansible_warnings() as said:
        try:
            inventory = InventoryManager(loader=loader, sources=[str(path)])
        except AnsibleError as err:
            message = said.cause() or str(err).strip().splitlines()[0]
            raise ConfigError(shown, "", f"not a usable Ansible inventory: {message}",
                              "check it with: ansible-inventory -i " + shown + " --list") from None
        variables = VariableManager(loader=loader, inventory=inventory)
        hosts = {}
        links: dict[tuple, Connection] = {}     # hosts that differ only in their address connect alike
        for entry in inventory.get_hosts():
            raw = variables.get_vars(host=entry)
            templar = Templar(loader=loader, variables=raw)

            def var(name: str, default: Any = None) -> Any:
                value = raw.get(name, default)
                return templar.template(value) if value is not None else default

            host_name = entry.name
            connection = var("ansible_connection") or ("local" if host_name in ("localhost", "127.0.0.1") and
                                                       var("ansible_host") in (None, host_name) else "ssh")
            env = var("fleetbuild_env", {}) or {}
            if not isinstance(env, Mapping) or not all(_ENV_NAME.match(str(k)) for k in env):
                raise ConfigError(shown, f"{host_name}.fleetbuild_env",
                                  "expected a mapping of environment variable names to values",
                                  "fleetbuild_env=\"{'LD_LIBRARY_PATH': '/opt/tensorrt/lib'}\"")
            try:
                slots = int(var("fleetbuild_slots", 1))
                if var("ansible_port") is not None:
                    int(var("ansible_port"))
            except (TypeError, ValueError):
                bad = "fleetbuild_slots" if not str(var("fleetbuild_slots", 1)).strip().isdigit() else "ansible_port"
                raise ConfigError(shown, f"{host_name}.{bad}", f"expected a whole number, got {var(bad)!r}") from None
            if slots < 1:
                raise ConfigError(shown, f"{host_name}.fleetbuild_slots", "must be at least 1")
            settings = {k: var(k) for k in raw if k.startswith("ansible_")}
            key = (str(connection), repr(sorted((k, v) for k, v in settings.items() if k not in ADDRESS_VARS)))
            link = links.get(key)
            if link is None:
                try:
                    link = resolve(host_name, settings, str(connection))
                except AnsibleError as err:
                    raise ConfigError(shown, f"{host_name}.ansible_connection",
                                      str(err).strip().splitlines()[0]) from None
                if link.transport != "ansible":        # a plugin object is one host's connection
                    links[key] = link
            hosts[host_name] = Host(
                name=host_name, groups=tuple(sorted(g.name for g in entry.get_groups() if g.name != "all")),
                connection=link.transport or str(connection), address=str(var("ansible_host") or host_name),
                python=str(var("fleetbuild_python") or DEFAULT_PYTHON),
                workdir=str(var("fleetbuild_workdir") or DEFAULT_WORKDIR), slots=slots,
                env={str(k): str(v) for k, v in env.items()}, link=link)
    return Inventory(path=path, hosts=hosts, warnings=tuple(said.warnings))


def local_inventory(path: Path, groups: list[str], python: str, workdir: str) -> Inventory:
    """An inventory of this machine alone (Ansible's local connection) in every group of `groups`:
    `matrix build --local`, for a self-hosted CI runner that is itself the build host. Written to
    `path` so that ansible-runner reads the same inventory."""
    import shlex

    host = (f"localhost ansible_connection=local ansible_python_interpreter={shlex.quote(python)} "
            f"fleetbuild_python={shlex.quote(python)} fleetbuild_workdir={shlex.quote(workdir)}")
    text = "# written by fleetbuild matrix build --local\n" + "".join(
        f"[{group}]\n{host}\n\n" for group in sorted(set(groups)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return load_inventory(path, "--local")
