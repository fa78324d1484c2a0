"""Inventories in every Ansible form, read by Ansible's own InventoryManager; fetched engines verified."""
from __future__ import annotations

import json

import pytest

from fleetbuild.build.dispatch.run import Dispatcher
from fleetbuild.report.results import JobResult
from fleetbuild.errors import ConfigError
from fleetbuild.build.hosts import load_inventory


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


INVENTORY_CASES = [
    # (id, inventory.ini text, the exact error line after "fleetbuild: error: inventory.ini: ")
    ("unclosed-section", "[t4\nbroken", "not a usable Ansible inventory: the ini parser says: not enough values "
     "to unpack (expected 3, got 2) (check it with: ansible-inventory -i inventory.ini --list)"),
    ("yaml-in-ini", "all:\n  hosts: [\n", "not a usable Ansible inventory: the ini parser says: Invalid host "
     "pattern 'all:' supplied, ending in ':' is not allowed, this character is reserved to provide a port. "
     "(check it with: ansible-inventory -i inventory.ini --list)"),
    ("bad-range", "[t4]\nh[1-3]\n", "not a usable Ansible inventory: the ini parser says: host range must be "
     "begin:end or begin:end:step (check it with: ansible-inventory -i inventory.ini --list)"),
    ("vars-not-key-value", "[t4]\nh1\n[t4:vars]\nx\n", "not a usable Ansible inventory: the ini parser says: "
     "Expected key=value, got: x (check it with: ansible-inventory -i inventory.ini --list)"),
    ("undefined-child", "[t4:children]\nnope\n", "not a usable Ansible inventory: the ini parser says: Section "
     "[t4:children] includes undefined group 'nope'. (check it with: ansible-inventory -i inventory.ini --list)"),
    ("slots-zero", "[t4]\nh fleetbuild_slots=0\n", "h.fleetbuild_slots: must be at least 1"),
    ("slots-word", "[t4]\nh fleetbuild_slots=x\n", "h.fleetbuild_slots: expected a whole number, got 'x'"),
    ("port-word", "[t4]\nh ansible_port=abc\n", "h.ansible_port: expected a whole number, got 'abc'"),
    ("env-list", "[t4]\nh \"fleetbuild_env=['x']\"\n", "h.fleetbuild_env: expected a mapping of environment "
     "variable names to values (fleetbuild_env=\"{'LD_LIBRARY_PATH': '/opt/tensorrt/lib'}\")"),
]


@pytest.mark.parametrize("case", INVENTORY_CASES, ids=[c[0] for c in INVENTORY_CASES])
def test_bad_inventories_are_one_line_errors(tmp_path, capfd, case):
    """Each bad inventory: one ConfigError line naming the file, the host variable or Ansible's own
    parser reason; nothing of Ansible's reaches stderr raw."""
    _, text, message = case
    path = tmp_path / "inventory.ini"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_inventory(path, "inventory.ini")
    assert str(raised.value) == "inventory.ini: " + message
    assert "\n" not in str(raised.value)
    out, err = capfd.readouterr()
    assert "[WARNING]" not in out + err and "ERROR" not in out + err


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
