"""RunContext: what one CLI invocation knows (arguments, environment, output, plugins, config).

Everything is passed in (env, stdout) rather than read from globals, and nothing is cached across
invocations: tests call main() many times in one process.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from typing import TYPE_CHECKING, Any

from fleetbuild.config.fleet import FleetConfig, RawConfig, parse_config, read_fleet_toml
from fleetbuild.filehash import default_cache_dir
from fleetbuild.plugin.manager import Plugins
from fleetbuild.report.events import OutputOptions

if TYPE_CHECKING:  # pragma: no cover
    from fleetbuild.build.hosts import Inventory

DEFAULT_CONFIG = "fleet.toml"


@dataclass
class RunContext:
    args: argparse.Namespace
    env: Mapping[str, str]
    output: OutputOptions
    extra_plugins: Sequence[object] = ()
    _plugins: Plugins | None = field(default=None, repr=False)
    _config: FleetConfig | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return Path(getattr(self.args, "config", None) or DEFAULT_CONFIG)

    @property
    def config_given(self) -> bool:
        return bool(getattr(self.args, "config", None))

    @property
    def cache_dir(self) -> Path:
        return default_cache_dir(dict(self.env))

    def plugins(self, raw: RawConfig | None = None) -> Plugins:
        if self._plugins is None:
            requested = list(getattr(self.args, "plugin", None) or ())
            blocked = [p[3:] for p in requested if p.startswith("no:")]
            modules = [p for p in requested if not p.startswith("no:")]
            if raw is not None:
                modules += [m for m in raw.plugin_modules() if m not in modules]
            autoload = not (getattr(self.args, "no_entry_points", False)
                            or self.env.get("FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD"))
            self._plugins = Plugins(entry_points=autoload, modules=modules, objects=self.extra_plugins,
                                    blocked=blocked)
        return self._plugins

    def config(self) -> FleetConfig:
        if self._config is None:
            raw = read_fleet_toml(self.config_path)
            self._config = parse_config(raw, self.plugins(raw).targets())
        return self._config

    def inventory(self, config: FleetConfig | None) -> "Inventory":
        """The inventory from -i, else fleet.toml's [inventory] path."""
        from fleetbuild.errors import ConfigError
        from fleetbuild.build.hosts import load_inventory

        given = getattr(self.args, "inventory", None)
        if getattr(self.args, "local", False):
            if given:
                from fleetbuild.errors import UsageError

                raise UsageError("--local builds on this machine: it cannot be combined with -i/--inventory")
            return self._local_inventory(config)
        if given:
            path = Path(given)
            if not path.exists():
                raise ConfigError(given, "", f"inventory not found (resolved to {path.resolve()})")
            return self._said(load_inventory(path, given, self.env))
        if config is None or config.inventory is None:
            source = config.source if config else str(self.config_path)
            raise ConfigError(source, "inventory.path", "no Ansible inventory configured",
                              "add [inventory] path = \"inventory.ini\" or pass -i FILE")
        return self._said(load_inventory(config.inventory, str(config.inventory), self.env))

    def _said(self, inventory: "Inventory") -> "Inventory":
        """Ansible's warnings about the inventory, one line each (never Ansible's own output)."""
        for warning in dict.fromkeys(inventory.warnings):
            first = warning.strip().splitlines()[0] if warning.strip() else ""
            self.output.err.print(f"fleetbuild: warning: {inventory.path}: ansible: {first}", markup=False,
                                  highlight=False)
        return inventory

    def _local_inventory(self, config: FleetConfig | None) -> "Inventory":
        import os
        import sys

        from fleetbuild.build.hosts import local_inventory

        names = set(config.matrix.targets) | {e["target"] for e in config.matrix.include if "target" in e} \
            if config else set()
        groups = sorted({config.targets[n].inventory_group for n in names if n in config.targets}) if config else []
        python = getattr(self.args, "local_python", None) or sys.executable
        return local_inventory(self.cache_dir / "local" / f"inventory-{os.getpid()}.ini", groups, python,
                               str(self.cache_dir / "local" / "worker"))

    def store(self, config: FleetConfig) -> Any:
        """The artifact store of fleet.toml's [store] (through the store plugins); $FLEETBUILD_STORE
        replaces its url (CI runs that publish elsewhere than a developer's fleet.toml says)."""
        url = self.env.get("FLEETBUILD_STORE") or config.store.url
        return self.plugins().store_for(url, config.store.options, config.root, config.source, self.env)

    def signer(self, config: FleetConfig) -> Any:
        """The signing key from $FLEETBUILD_SIGNING_KEY or [signing] key, or None (unsigned)."""
        from fleetbuild.store import signing

        path = self.env.get("FLEETBUILD_SIGNING_KEY") or (str(config.signing.key) if config.signing.key else None)
        return signing.load(Path(path), self.env) if path else None

    def public_key(self, config: FleetConfig) -> str | None:
        """The minisign public key text from --public-key FILE, else the public half of the
        configured signing key, else None."""
        from fleetbuild.errors import UsageError

        given = getattr(self.args, "public_key", None)
        if given:
            try:
                return Path(given).read_text("utf-8")
            except OSError as err:
                raise UsageError(f"--public-key {given}: cannot read it: {err.strerror or err}") from None
        signer = self.signer(config)
        return signer.public_key_text() if signer is not None else None

    def optional_config(self) -> FleetConfig | None:
        """The config when one is named or ./fleet.toml exists, else None."""
        if self.config_given or self.config_path.exists():
            return self.config()
        return None
