"""What a new user gets: the wheel built with `python -m build`, installed alone in a fresh venv,
run from a directory outside the checkout (`--version`, `init`, `matrix plan`, `bundle` and a real
TensorRT-RTX `matrix build` over Ansible's local connection); the zipapp it writes runs on 3.6."""
from __future__ import annotations

import json
import shutil
import sys
import zipfile

from conftest import FIXTURES, ROOT, pyenv_python, require

sys.path.insert(0, str(FIXTURES))
from wheel import run  # noqa: E402


def test_every_package_of_the_tree_is_in_the_wheel(installed_wheel):
    names = set(zipfile.ZipFile(installed_wheel.wheel).namelist())
    packages = [p.parent for p in (ROOT / "fleetbuild").rglob("*.py") if "__pycache__" not in p.parts]
    for directory in set(packages):
        module_dir = directory.relative_to(ROOT).as_posix()
        assert any(n.startswith(module_dir + "/") for n in names), f"{module_dir} is not in the wheel"
    for path in (ROOT / "fleetbuild").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert path.relative_to(ROOT).as_posix() in names, path
    for expected in ("fleetbuild_targets/t4.toml", "fleetbuild_targets/_tensorrt.toml", "fleetbuild_plugins/s3.py",
                     "fleetbuild/templates/fleet.toml", "fleetbuild/remote/backends/tensorrt_rtx.py"):
        assert expected in names, expected
    assert not any(n.startswith(("tests/", "examples/", "bench/")) for n in names)


def test_wheel_and_sdist_pass_twine_check(installed_wheel):
    checked = run([sys.executable, "-m", "twine", "check", "--strict", installed_wheel.wheel, installed_wheel.sdist])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2


def test_fresh_venv_runs_the_quickstart(installed_wheel, tmp_path):
    work = tmp_path / "user"
    work.mkdir()
    env = installed_wheel.env(tmp_path / "home")
    fleetbuild = installed_wheel.bin / "fleetbuild"

    where = run([installed_wheel.python, "-c", "import fleetbuild, fleetbuild_plugins.s3, fleetbuild.remote.worker; "
                 "print(fleetbuild.__file__)"], cwd=work, env=env)
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(installed_wheel.venv)), where.stdout       # not the checkout
    assert "__editable__" not in run([installed_wheel.python, "-m", "pip", "list"], env=env).stdout

    version = run([fleetbuild, "--version"], cwd=work, env=env)
    assert version.returncode == 0 and version.stdout.startswith("fleetbuild "), version.stderr

    init = run([fleetbuild, "init", "starter"], cwd=work, env=env)
    assert init.returncode == 0, init.stderr
    assert (work / "starter" / "fleet.toml").exists() and (work / "starter" / "inventory.ini").exists()
    plan = run([fleetbuild, "-c", "starter/fleet.toml", "matrix", "plan"], cwd=work, env=env)
    assert plan.returncode == 1 and "models/classifier.onnx" in plan.stdout + plan.stderr   # no model yet
    assert "Traceback" not in plan.stderr

    for name in ("fleet.toml", "inventory.ini", "make_models.py"):
        shutil.copy(ROOT / "examples" / "quickstart" / name, work / name)
    inventory = work / "inventory.ini"          # the quickstart's, with the worker's files under tmp_path
    inventory.write_text(inventory.read_text().replace("/tmp/fleetbuild-quickstart-worker", str(tmp_path / "worker")))
    models = run([installed_wheel.python, "make_models.py"], cwd=work, env=env)
    assert models.returncode == 0, models.stderr
    plan = run([fleetbuild, "matrix", "plan", "--json"], cwd=work, env=env)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["invalid"] == 0

    bundle = run([fleetbuild, "bundle", "worker.pyz"], cwd=work, env=env)
    assert bundle.returncode == 0, bundle.stderr
    py36 = pyenv_python("3.6")
    require(py36 is not None, "Python 3.6 (pyenv)", "the machine image's pyenv interpreters")
    probe = run([py36, work / "worker.pyz", "probe"], cwd=work, env=env)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["python"]["version"].startswith("3.6")

    build = run([fleetbuild, "matrix", "build", "--only", "conv_bn_relu", "--json", "results.json"],
                cwd=work, env=env, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    results = json.loads((work / "results.json").read_text())["results"]
    assert {r["job_id"]: r["status"] for r in results} == {
        "conv_bn_relu/t4/fp32": "built", "conv_bn_relu/t4/fp16": "built",
        "conv_bn_relu/a100/fp32": "built", "conv_bn_relu/a100/fp16": "built"}
    assert len(list((work / "artifacts" / "blobs" / "sha256").iterdir())) == 4
    assert "Traceback" not in build.stderr and "\x1b[" not in build.stdout + build.stderr

