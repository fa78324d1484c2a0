"""Every inventory Ansible can reach, fleetbuild builds on: connection settings resolved by Ansible
itself (ansible.cfg, ANSIBLE_* variables, host variables), extra ssh arguments used (a ProxyCommand
through a second sshd), a host behind a connection plugin fleetbuild's fast path does not speak (a
FAKE plugin, Ansible's local connection under another name: tests/fixtures/connection_plugins), and
hosts that cannot work refused before their probe with the variable named.

One loopback sshd fleet for the module: `jump` and `t4-a`; builds are real TensorRT-RTX builds."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, import_or_require, require

sys.path.insert(0, str(FIXTURES))
from fleet import Fleet, FleetHost, sshd_path  # noqa: E402

PLUGINS = FIXTURES / "connection_plugins"
CONFIG = """
[project]
name = "reach"
[defaults]
precisions = ["fp16"]
backend = "tensorrt-rtx"
workspace = "256MiB"
[models.conv]
onnx = "models/conv_bn_relu.onnx"
[matrix]
targets = ["t4"]
[inventory]
path = "inventory.ini"
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    require(sshd_path() is not None and shutil.which("ssh") is not None, "OpenSSH server and client",
            "make test-deps (apt-get install openssh-server)")
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    started = Fleet(tmp_path_factory.mktemp("reach") / "fleet",
                    [FleetHost("jump", "bastion", "t4", sys.executable), FleetHost("t4-a", "t4", "t4", sys.executable)],
                    first_address=110).start()
    yield started
    started.stop()


def inventory_text(fleet, *, drop=(), add: str = "") -> str:
    """The fleet's inventory line for t4-a (variables in `drop` removed, `add` appended)."""
    path = fleet.base / "full.ini"
    fleet.inventory(path)
    text = path.read_text()
    for name in drop:
        text = re.sub(rf" {name}=\S+", "", text)
    return text.replace("\nt4-a ", "\nt4-a " + add + " ", 1) if add else text


def build(cli, project, text: str, **extra_env):
    project.write(CONFIG)
    (project.root / "inventory.ini").write_text(text)
    result = cli("matrix", "build", "--only", "conv/t4/*", "--rebuild", "--json", "-", extra_env=extra_env or None)
    rows = json.loads(result.out)["results"] if result.out.strip().startswith("{") else []
    return result, rows


def hosts_list(cli, **extra_env) -> dict:
    result = cli("hosts", "list", "--json", "-", extra_env=extra_env or None)
    assert result.code == 0, result.err
    return {h["host"]: h for h in json.loads(result.out)["hosts"]}


def test_user_and_key_only_in_ansible_cfg(cli, project, fleet):
    text = inventory_text(fleet, drop=("ansible_user", "ansible_ssh_private_key_file"))
    (project.root / "ansible.cfg").write_text(
        f"[defaults]\nremote_user = root\nprivate_key_file = {fleet.keys / 'client_key'}\n")
    result, rows = build(cli, project, text)
    assert result.code == 0 and [r["status"] for r in rows] == ["built"], result.err
    host = hosts_list(cli)["t4-a"]
    assert (host["user"], host["key"], host["transport"]) == ("root", str(fleet.keys / "client_key"), "ssh")
    assert "password" not in json.dumps(host).replace('"password": null', "")


def test_user_and_key_only_in_the_environment(cli, project, fleet):
    text = inventory_text(fleet, drop=("ansible_user", "ansible_ssh_private_key_file"))
    env = {"ANSIBLE_REMOTE_USER": "root", "ANSIBLE_PRIVATE_KEY_FILE": str(fleet.keys / "client_key")}
    result, rows = build(cli, project, text, **env)
    assert result.code == 0 and [r["status"] for r in rows] == ["built"], result.err
    assert hosts_list(cli, **env)["t4-a"]["key"] == str(fleet.keys / "client_key")


def test_without_the_key_anywhere_the_host_is_unreachable_not_lost(cli, project, fleet):
    text = inventory_text(fleet, drop=("ansible_ssh_private_key_file",))
    result, rows = build(cli, project, text)
    assert result.code == 1 and "lost the connection" not in result.err, result.err
    assert "unreachable" in rows[0]["reason"] or "Permission denied" in rows[0]["reason"], rows


def test_extra_ssh_args_are_used_a_proxy_command_through_a_second_sshd(cli, project, fleet, tmp_path):
    jump = fleet.hosts["jump"]
    mark = tmp_path / "proxy-used"
    hop = (f"ssh -i {fleet.keys / 'client_key'} -o UserKnownHostsFile={fleet.base / 'known_hosts'} "
           f"-o StrictHostKeyChecking=accept-new -p {jump.port} root@{jump.address} -W \"$1:$2\"")
    script = tmp_path / "proxy.sh"
    script.write_text(f"#!/bin/sh\necho used >> {mark}\nexec {hop}\n")
    script.chmod(0o755)
    text = inventory_text(fleet, add=f"ansible_ssh_extra_args=\"-o ProxyCommand='{script} %h %p'\"")
    result, rows = build(cli, project, text)
    assert result.code == 0 and [r["status"] for r in rows] == ["built"], result.err
    assert mark.read_text().count("used") == 1      # the probe play's master, which fleetbuild's ssh then rode
    again = cli("matrix", "build", "--only", "conv/t4/*", "--rebuild")   # facts cached: no play, fleetbuild's ssh
    assert again.code == 0, again.err
    assert mark.read_text().count("used") == 2


def test_a_host_behind_another_connection_plugin_builds_through_ansible(cli, project, fleet, tmp_path):
    text = (f"[t4]\nbox ansible_connection=shellbox ansible_python_interpreter={sys.executable} "
            f"fleetbuild_python={sys.executable} fleetbuild_workdir={tmp_path / 'box-work'}\n")
    env = {"ANSIBLE_CONNECTION_PLUGINS": str(PLUGINS)}
    result, rows = build(cli, project, text, **env)
    assert result.code == 0 and [(r["host"], r["status"]) for r in rows] == [("box", "built")], result.err
    probe = cli("hosts", "probe", "--json", "-", extra_env=env)
    [host] = json.loads(probe.out)["hosts"]
    assert host["transport"] == "ansible" and "ansible_connection=shellbox" in host["why"], host
    assert not list((tmp_path / "box-work").rglob(".fleetbuild-io-*"))     # its stdin/stdout files are gone


@pytest.mark.parametrize("variables,named", [
    ("ansible_password=hunter2-test-password", "ansible_password"),
    ("ansible_connection=community.nosuch.plugin", "ansible_connection=community.nosuch.plugin"),
    ("ansible_become=true ansible_become_method=su", "ansible_become_method=su"),
    ("ansible_become=true ansible_become_password=hunter2-test-password", "ansible_become_password"),
])
def test_a_host_that_cannot_work_is_refused_before_its_probe(cli, project, fleet, variables, named):
    text = inventory_text(fleet, add=variables)
    project.write(CONFIG)
    (project.root / "inventory.ini").write_text(text)
    probe = cli("hosts", "probe", "--json", "-")
    hosts = {h["host"]: h for h in json.loads(probe.out)["hosts"]}
    assert probe.code == 1 and named in hosts["t4-a"]["problems"][0], hosts["t4-a"]
    assert hosts["jump"]["status"] == "ok"
    listed = hosts_list(cli)["t4-a"]
    assert named in listed["problem"] and "hunter2" not in json.dumps(listed)
    result, rows = build(cli, project, text)
    assert result.code == 1 and named in rows[0]["reason"], rows


def test_become_runs_the_host_commands_through_sudo(cli, project, fleet):
    require(shutil.which("sudo") is not None, "sudo", "make test-deps (apt-get install sudo)")
    text = inventory_text(fleet, add="ansible_become=true")
    result, rows = build(cli, project, text)
    assert result.code == 0 and [r["status"] for r in rows] == ["built"], result.err
    assert hosts_list(cli)["t4-a"]["become"] == "root"


def test_become_wraps_the_command_the_way_ansible_does():
    from fleetbuild.build.connection import become

    assert become("cd '/a b' && ls", None) == "cd '/a b' && ls"
    assert become("cd '/a b' && ls", "build") == "sudo -n -H -u build -- sh -c 'cd '\"'\"'/a b'\"'\"' && ls'"


def test_the_config_file_is_found_as_ansible_finds_it(tmp_path, monkeypatch):
    from fleetbuild.build.connection import config_file

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    assert config_file({"HOME": str(home)}, work) in (None, Path("/etc/ansible/ansible.cfg"))
    (home / ".ansible.cfg").write_text("[defaults]\n")
    assert config_file({"HOME": str(home)}, work) == home / ".ansible.cfg"
    (work / "ansible.cfg").write_text("[defaults]\n")
    assert config_file({"HOME": str(home)}, work) == work / "ansible.cfg"
    work.chmod(0o777)                                  # Ansible ignores a world-writable directory's file
    assert config_file({"HOME": str(home)}, work) == home / ".ansible.cfg"
    explicit = tmp_path / "elsewhere.cfg"
    explicit.write_text("[defaults]\n")
    assert config_file({"HOME": str(home), "ANSIBLE_CONFIG": str(explicit)}, work) == explicit
