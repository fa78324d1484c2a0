"""How fleetbuild reaches each host, resolved by Ansible itself.

For every inventory host, Ansible's own connection plugin (the plugin loader, with the host's
variables) gives the options Ansible would connect with, in Ansible's precedence of ansible.cfg,
ANSIBLE_* environment variables and inventory variables: user, port, key, ssh executable and
arguments, password, host key checking. fleetbuild then picks a transport:

- `ssh`: its own persistent SSH master (the fast path) built from exactly those options;
- `local`: a shell on this machine (ansible_connection=local);
- `ansible`: any other connection plugin (docker, podman, lxd, kubectl, paramiko, ...), driven through
  the plugin's own exec_command / put_file / fetch_file: slower, but wherever Ansible gets, fleetbuild
  gets;
- refused (`problem` set): what even that cannot do, named by its variable, before any probe.

`config_file` finds the ansible.cfg Ansible would read for a run (ANSIBLE_CONFIG, ./ansible.cfg,
~/.ansible.cfg, /etc/ansible/ansible.cfg); `ansible_config` makes Ansible's settings that file and
the run's ANSIBLE_* variables while the inventory is read and the options are resolved.
"""
from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

FAST = ("ssh", "local")
BECOME_METHODS = ("sudo",)


@dataclass(frozen=True)
class Connection:
    plugin: str                          # Ansible's connection plugin name, e.g. "ssh", "community.docker.docker"
    transport: str                       # "ssh" | "local" | "ansible"
    why: str                             # one line: why this transport
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    ssh_executable: str = "ssh"
    ssh_args: tuple[str, ...] = ()       # ssh_args, ssh_common_args, ssh_extra_args, in Ansible's order
    host_key_checking: bool = True
    password: str | None = None          # never shown: `hosts list` says only that there is one
    timeout: int | None = None
    become_user: str | None = None       # run the host's commands as this user (sudo), as Ansible's become does
    problem: str | None = None           # the host cannot be used, and why (the variable named)
    plugin_object: Any = field(default=None, compare=False, repr=False)   # "ansible": the configured plugin

    def shown(self) -> dict[str, Any]:
        """What `hosts list` shows: no password, no secret."""
        return {"plugin": self.plugin, "transport": self.transport, "why": self.why, "user": self.user,
                "port": self.port, "key": self.key_file, "password": "set" if self.password else None,
                "become": self.become_user, "problem": self.problem}


def config_file(env: Mapping[str, str], cwd: Path | None = None) -> Path | None:
    """The ansible.cfg Ansible would read for this environment and directory (its own search order;
    like Ansible, a ./ansible.cfg in a world-writable directory is ignored)."""
    if env.get("ANSIBLE_CONFIG"):
        given = Path(os.path.expanduser(env["ANSIBLE_CONFIG"]))
        given = given / "ansible.cfg" if given.is_dir() else given
        return given if given.is_file() else None
    here = (cwd or Path.cwd()) / "ansible.cfg"
    if here.is_file() and not os.stat(here.parent).st_mode & 0o002:
        return here
    home = Path(env.get("HOME") or os.path.expanduser("~")) / ".ansible.cfg"
    for candidate in (home, Path("/etc/ansible/ansible.cfg")):
        if candidate.is_file():
            return candidate
    return None


@contextlib.contextmanager
def ansible_config(env: Mapping[str, str], path: Path | None) -> Iterator[None]:
    """Ansible's settings read from `path` and `env` (not the import-time ones) while this runs: one
    thread resolves connections before any other work starts."""
    import ansible.constants as C

    saved_file = C.config._config_file
    saved_env = {k: v for k, v in os.environ.items() if k.startswith("ANSIBLE_")}
    for key in saved_env:                  # Ansible reads its settings from os.environ: the run's, for now
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if k.startswith("ANSIBLE_")})
    # The ConfigManager reads its file at import; the plugin definitions it holds stay, the file it
    # answers from is this run's (read again: it may have changed since an earlier run in this process).
    C.config._config_file = str(path) if path else None
    if path:
        C.config._parsers.pop(str(path), None)
    try:
        _plugin_paths()                    # once per run, not per host
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("ANSIBLE_")]:
            del os.environ[key]
        os.environ.update(saved_env)
        C.config._config_file = saved_file


def resolve(name: str, variables: Mapping[str, Any], connection: str) -> Connection:
    """The connection of host `name` from its (templated) variables; call inside ansible_config()."""
    if connection in ("smart", "ansible.builtin.smart"):     # Ansible's own alias for ssh
        connection = "ssh"
    if connection in ("local", "ansible.builtin.local"):
        return _with_become(Connection("local", "local", "ansible_connection=local: commands run on this machine"),
                            name, variables)
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    try:
        with _quiet():
            plugin = connection_loader.get(connection, PlayContext(), None)
    except Exception as err:             # a collection or module the plugin needs is missing
        plugin, missing = None, f" ({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})"
    else:
        missing = ""
    if plugin is None:
        return Connection(connection, "", "", problem=f"ansible_connection={connection}: Ansible has no such "
                          f"connection plugin here{missing} (install its collection on the controller, e.g. "
                          "ansible-galaxy collection install community.docker)")
    try:
        plugin.set_options(var_options=dict(variables))
    except Exception as err:            # a plugin's own option check: say it as Ansible would
        return Connection(connection, "", "", problem=f"ansible_connection={connection}: {err}")
    if getattr(plugin, "transport", connection) != "ssh" or connection not in ("ssh", "ansible.builtin.ssh"):
        return _with_become(Connection(connection, "ansible", f"ansible_connection={connection}: through "
                                       "Ansible's connection plugin (exec_command, put_file, fetch_file)",
                                       plugin_object=plugin), name, variables)
    option = plugin.get_option
    password = option("password")
    args: list[str] = []
    for key in ("ssh_args", "ssh_common_args", "ssh_extra_args"):
        args += shlex.split(option(key) or "")
    port = option("port")
    found = Connection(
        "ssh", "ssh", "ssh: fleetbuild's persistent SSH master, with Ansible's resolved ssh options",
        user=option("remote_user") or None, port=int(port) if port else None,
        key_file=os.path.expanduser(option("private_key_file")) if option("private_key_file") else None,
        ssh_executable=option("ssh_executable") or "ssh", ssh_args=tuple(args),
        host_key_checking=bool(option("host_key_checking")), password=password or None,
        timeout=int(option("timeout")) if option("timeout") else None)
    if password:
        return _replace(found, problem="ansible_password (ansible_ssh_pass) is set: fleetbuild's builds log in with "
                        "keys only (a build host is reached many times per run, unattended); give the host a key "
                        "(ansible_ssh_private_key_file, or private_key_file in ansible.cfg)")
    return _with_become(found, name, variables)


_LOADER_READY: list[bool] = []


def _plugin_paths() -> None:
    """Ansible's plugin loader as its own commands set it up: collections importable (once per
    process), and the connection plugin paths of this run's ansible.cfg / ANSIBLE_CONNECTION_PLUGINS."""
    import ansible.constants as C
    from ansible.plugins.loader import connection_loader, init_plugin_loader

    if not _LOADER_READY:
        init_plugin_loader()
        _LOADER_READY.append(True)
    paths, origin = C.config.get_config_value_and_origin("DEFAULT_CONNECTION_PLUGIN_PATH")
    if origin != "default":                # the defaults are the loader's own already
        for path in paths or []:
            connection_loader.add_directory(os.path.expanduser(str(path)))


def _with_become(found: Connection, name: str, variables: Mapping[str, Any]) -> Connection:
    """`ansible_become` the way Ansible does it: sudo to ansible_become_user (root by default)."""
    if not _true(variables.get("ansible_become")):
        return found
    method = str(variables.get("ansible_become_method") or "sudo")
    user = str(variables.get("ansible_become_user") or "root")
    if method not in BECOME_METHODS:
        return _replace(found, problem=f"ansible_become_method={method}: fleetbuild's builds become another user "
                        "with sudo only (ansible_become_method=sudo)")
    if variables.get("ansible_become_password") or variables.get("ansible_become_pass"):
        return _replace(found, problem="ansible_become_password is set: builds run unattended, so sudo must not "
                        "ask for a password on the host (NOPASSWD for the build user)")
    return _replace(found, become_user=user, why=found.why + f"; as {user} (ansible_become, sudo)")


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1", "on")


def _replace(found: Connection, **changes: Any) -> Connection:
    import dataclasses

    return dataclasses.replace(found, **changes)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Ansible's plugin loader warns on stderr for a plugin it cannot load (the problem says it) and
    for a deprecated one (paramiko): fleetbuild's output stays its own."""
    from ansible.utils.display import Display

    display = Display()
    saved = display.warning, display.deprecated
    display.warning = lambda *a, **k: None          # type: ignore[method-assign]
    display.deprecated = lambda *a, **k: None       # type: ignore[method-assign]
    try:
        yield
    finally:
        display.warning, display.deprecated = saved  # type: ignore[method-assign]


def ssh_args_setting() -> str:
    """The ssh_args of ansible.cfg / ANSIBLE_SSH_ARGS (call inside ansible_config): fleetbuild's probe play
    adds its master options to them instead of replacing them."""
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    plugin = connection_loader.get("ssh", PlayContext(), None)      # its definitions, in this process
    plugin.set_options()
    return str(plugin.get_option("ssh_args") or "")


def become(command: str, user: str | None) -> str:
    """`command` run as `user` through sudo, as Ansible's become does (no password: -n fails fast)."""
    if not user:
        return command
    return f"sudo -n -H -u {shlex.quote(user)} -- sh -c {shlex.quote(command)}"
