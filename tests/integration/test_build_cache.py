"""The build cache: a second build of the same matrix builds nothing and, with fresh cached host
facts, opens no SSH session and starts no Ansible run."""
from __future__ import annotations

import json
import sys

import pytest
from conftest import FIXTURES, import_or_require

sys.path.insert(0, str(FIXTURES))
from fleet import FleetHost  # noqa: E402

CONFIG = """
[project]
name = "cache"
[defaults]
backend = "tensorrt-rtx"
precisions = ["fp16"]
[models.conv]
onnx = "models/conv_bn_relu.onnx"
[models.pair]
onnx = "models/two_input.onnx"
[matrix]
targets = ["t4"]
[inventory]
path = "inventory.ini"
"""


@pytest.fixture
def remote_calls(monkeypatch):
    from fleetbuild.build.dispatch import ansible
    from fleetbuild.build.dispatch import transport

    calls = []
    real_transport, real_ansible = transport.Transport.run, ansible.AnsibleRunner.run
    monkeypatch.setattr(transport.Transport, "run", lambda self, *a, **k: calls.append("ssh") or real_transport(self, *a, **k))
    monkeypatch.setattr(ansible.AnsibleRunner, "run", lambda self, *a, **k: calls.append("ansible") or real_ansible(self, *a, **k))
    return calls


def test_cached_matrix_opens_no_ssh_session(project, fleet_factory, cli, remote_calls):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    fleet = fleet_factory([FleetHost("gpu-t4", "t4", "t4", sys.executable)], first_address=130)
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG)
    first = cli("matrix", "build", "--json")
    assert first.code == 0, first.err
    assert [r["status"] for r in json.loads(first.out)["results"]] == ["built", "built"]
    assert remote_calls
    remote_calls.clear()
    second = cli("matrix", "build", "--json")
    data = json.loads(second.out)
    assert second.code == 0 and data["cached"] == 2 and data["built"] == 0
    assert remote_calls == []                                          # fresh cached facts: no SSH at all
    first_keys = {r["job_id"]: r["build_key"] for r in json.loads(first.out)["results"]}
    assert {r["job_id"]: r["build_key"] for r in data["results"]} == first_keys
    third = cli("matrix", "build", "--json", "--facts-max-age", "0")
    assert json.loads(third.out)["cached"] == 2 and "ansible" in remote_calls   # re-probed, still nothing built
    remote_calls.clear()
    forced = cli("matrix", "build", "--json", "--rebuild", "pair")
    statuses = {r["job_id"]: r["status"] for r in json.loads(forced.out)["results"]}
    assert statuses == {"conv/t4/fp16": "cached", "pair/t4/fp16": "built"}


def test_cache_misses_when_the_store_lost_the_blob(project, fleet_factory, cli):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    fleet = fleet_factory([FleetHost("gpu-t4", "t4", "t4", sys.executable)], first_address=135)
    fleet.inventory(project.root / "inventory.ini")
    project.write(CONFIG.replace('[models.pair]\nonnx = "models/two_input.onnx"\n', ''))
    assert cli("matrix", "build").code == 0
    for blob in (project.root / "artifacts" / "blobs" / "sha256").iterdir():
        blob.unlink()
    result = json.loads(cli("matrix", "build", "--json").out)
    assert result["built"] == 1 and result["cached"] == 0
