"""First-party fleetbuild plugins, importable as `fleetbuild_plugins` (load one with -p or
fleet.toml's [plugins] load = ["fleetbuild_plugins.NAME"])."""
