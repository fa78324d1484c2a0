"""`pip wheel .` carries the targets, templates and first-party plugins, and runs from the wheel alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_package_data_and_runs(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
                            str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("fleetbuild-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("fleetbuild_targets/t4.toml", "fleetbuild_targets/nano.toml", "fleetbuild_targets/_tensorrt.toml",
                     "fleetbuild_plugins/__init__.py", "fleetbuild/templates/fleet.toml",
                     "fleetbuild/templates/inventory.ini", "fleetbuild/cli.py"):
        assert expected in names, expected
    assert not any(n.startswith(("tests/", "examples/", "bench/")) for n in names)
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {**os.environ, "PYTHONPATH": str(unpacked), "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": "1"}
    code = ("import fleetbuild, fleetbuild_targets, sys; from fleetbuild.cli import main; "
            "print(fleetbuild.__file__, fleetbuild_targets.__file__, file=sys.stderr); sys.exit(main(['targets', '--json']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(str(unpacked)) == 2                      # imported from the wheel, not the checkout
    assert {t["name"] for t in json.loads(run.stdout)["targets"]} >= {"t4", "a100", "orin", "nano"}
