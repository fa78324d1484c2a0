"""Inventories in every Ansible form, read by Ansible's own InventoryManager; fetched engines verified."""
from __future__ import annotations

import json

import pytest

from fleetbuild.dispatch.run import Dispatcher
from fleetbuild.results import JobResult
from fleetbuild.errors import ConfigError
from fleetbuild.hosts import load_inventory


def test_yaml_inventory(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    orin:\n      hosts:\n        orin-01:\n          ansible_host: 10.0.1.31\n"
                    "          ansible_user: nvidia\n          fleetbuild_slots: 2\n"
                    "          fleetbuild_env: {LD_LIBRARY_PATH: /opt/trt/lib}\n")
    host = load_inventory(path).hosts["orin-01"]
    assert (host.groups, host.address, host.user, host.slots, host.connection) == (("orin",), "10.0.1.31", "nvidia", 2, "ssh")
    assert host.env == {"LD_LIBRARY_PATH": "/opt/trt/lib"} and host.python == "/usr/bin/python3"


def test_dynamic_inventory_script(tmp_path):
    script = tmp_path / "inventory.py"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + json.dumps({
        "t4": {"hosts": ["gpu-1"]}, "_meta": {"hostvars": {"gpu-1": {"ansible_host": "10.0.0.11",
                                                                    "fleetbuild_python": "/opt/py/bin/python3"}}}})
                      + "\nEOF\n")
    script.chmod(0o755)
    host = load_inventory(script).hosts["gpu-1"]
    assert host.groups == ("t4",) and host.python == "/opt/py/bin/python3"


def test_directory_inventory_and_local_connection(tmp_path):
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "a.ini").write_text("[t4]\nlocalhost ansible_connection=local\n")
    (tmp_path / "inv" / "b.ini").write_text("[a100]\nlocalhost\n")
    host = load_inventory(tmp_path / "inv").hosts["localhost"]
    assert host.local and host.groups == ("a100", "t4")


@pytest.mark.parametrize("text,message", [
    ("[t4\nbroken", "not a usable Ansible inventory"),
    ("[t4]\nh fleetbuild_slots=0\n", "h.fleetbuild_slots: must be at least 1"),
    ("[t4]\nh \"fleetbuild_env=['x']\"\n", "h.fleetbuild_env: expected a mapping of environment variable names"),
])
def test_bad_inventories_are_config_errors(tmp_path, text, message):
    path = tmp_path / "inventory.ini"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_inventory(path, "inventory.ini")


def test_engine_checksum_mismatch_after_fetch_is_caught(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "engine.plan").write_bytes(b"vtrt tampered in transit")
    (out / "result.json").write_text(json.dumps({"status": "ok", "engine": {"sha256": "0" * 64}}))
    (out / "manifest.json").write_text(json.dumps({"engine": {"file": "engine.plan", "sha256": "0" * 64}}))
    result = JobResult("m/t4/fp16", "t4", "failed", host="h")
    stored = []
    fake_self = type("D", (), {"_store": lambda self, *a: stored.append(a)})()
    Dispatcher._finish(fake_self, result, out, "", 0, "/usr/bin/python3")
    assert (result.status, result.kind, result.reason) == ("failed", "transfer", "engine checksum mismatch after fetch")
    assert stored == []
