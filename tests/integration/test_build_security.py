"""A hostile work dir and ONNX path build normally; secrets in the environment never reach output,
logs or artifacts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import import_or_require

SECRET = "AKIAFLEETBUILDSECRET0123456789"


def test_hostile_paths_and_secret_environment(project, env, tmp_path):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    odd = project.root / "models $(touch PWNED) 'q'"
    odd.mkdir()
    shutil.copy(project.root / "models" / "two_input.onnx", odd / "two input;.onnx")
    workdir = tmp_path / "work dir $(touch PWNED2); `touch PWNED3`"
    (project.root / "inventory.ini").write_text(
        f'[t4]\nlocalhost ansible_connection=local fleetbuild_python="{{{{ ansible_playbook_python }}}}" '
        f'"fleetbuild_workdir={workdir}"\n')
    project.write('[project]\nname = "sec"\n[defaults]\nbackend = "tensorrt-rtx"\nprecisions = ["fp16"]\n'
                  f'[models.pair]\nonnx = "{odd.name}/two input;.onnx"\n[matrix]\ntargets = ["t4"]\n'
                  '[inventory]\npath = "inventory.ini"\n')
    proc = subprocess.run([sys.executable, "-m", "fleetbuild", "matrix", "build", "--json"], cwd=project.root,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, "AWS_SECRET_ACCESS_KEY": SECRET, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["results"][0]["status"] == "built"
    for pwned in ("PWNED", "PWNED2", "PWNED3"):
        assert not list(tmp_path.rglob(pwned)) and not list(project.root.rglob(pwned))
    assert SECRET not in proc.stdout + proc.stderr
    for root in (tmp_path, project.root):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 5_000_000:
                assert SECRET.encode() not in path.read_bytes(), path
