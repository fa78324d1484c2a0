"""The outputs of plan and build, each a reporter on the same events: GitHub Actions mode
(annotations at the right fleet.toml lines, groups, masks, step summary, step outputs) and the
HTML report, rendered in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import import_or_require, require

from fleetbuild.errors import FleetbuildError
from fleetbuild.plugin import hookimpl

CONFIG = """
[project]
name = "reports"
version = "2.1.0"

[defaults]
precisions = ["fp32", "fp16"]
backend = "tensorrt-rtx"
workspace = "256MiB"

[models.conv]
onnx = "models/conv_bn_relu.onnx"

[models.mlp]
onnx = "models/dynamic_mlp.onnx"
inputs.x = { min = [1, 64], opt = [8, 64], max = [32, 64] }

[matrix]
targets = ["t4", "a100"]
include = [
  { model = "conv", target = "a100", gpu_fallback = true },
  { model = "conv", target = "t4", precision = "int8", variant = "q" },
]

[inventory]
path = "inventory.ini"

[store]
url = "file://./artifacts"
"""
PRESIGNED = ("https://engines.s3.amazonaws.com/m.plan?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE"
             "&X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.fixture
def reports_project(project, tmp_path):
    path = project.write(CONFIG)
    (tmp_path / "inventory.ini").write_text("[t4]\n[a100]\n")
    return path


def github_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "output.txt"), **extra}


def outputs(tmp_path: Path) -> dict[str, str]:
    import sys

    from conftest import FIXTURES
    sys.path.insert(0, str(FIXTURES / "workflow"))
    from runner import read_key_values
    return read_key_values(tmp_path / "output.txt")


def test_github_plan_annotations_summary_and_outputs(reports_project, cli, tmp_path):
    result = cli("matrix", "plan", extra_env=github_env(tmp_path, AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG"))
    assert result.code == 1
    err = result.err.splitlines()
    assert err[0] == "::add-mask::wJalrXUtnFEMI/K7MDENG"             # a secret-named variable, masked first
    mlp, include = line_of(reports_project, "[models.mlp]"), line_of(reports_project, 'variant = "q"')
    conv = line_of(reports_project, "[models.conv]")
    assert any(line.startswith(f"::error file=fleet.toml,line={mlp},title=invalid job mlp/t4/fp32::"
                               "rtx-turing-fp32-gemm: ") for line in err), result.err
    assert any(line.startswith(f"::error file=fleet.toml,line={include},title=invalid job conv/t4/int8+q::")
               for line in err), result.err
    assert f"::warning file=fleet.toml,line={conv},title=warning for conv/a100/fp32::gpu-fallback-without-dla" in result.err
    assert "\x1b[" not in result.out + result.err
    summary = (tmp_path / "summary.md").read_text()
    assert "## fleetbuild plan: reports 2.1.0" in summary
    assert "| model | t4 | a100 |" in summary and "| mlp | fp32 ⛔ invalid<br>fp16 ✅ ok |" in summary
    assert "- `conv/t4/int8+q` (invalid): " in summary
    out = outputs(tmp_path)
    assert json.loads(out["targets"]) == ["t4", "a100"]
    assert json.loads(out["matrix"]) == {"include": [{"target": "t4", "inventory_group": "t4", "jobs": 3},
                                                     {"target": "a100", "inventory_group": "a100", "jobs": 4}]}
    assert (out["invalid"], out["built"], out["release-index"]) == ("2", "0", "")


def test_masks_only_on_a_real_runner(reports_project, cli, tmp_path):
    env = github_env(tmp_path, AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG")
    del env["GITHUB_ACTIONS"]
    result = cli("--github", "matrix", "plan", extra_env=env)         # --github on a terminal: never echo secrets
    assert "wJalrXUtnFEMI" not in result.out + result.err
    assert "::error file=fleet.toml" in result.err


def test_unwritable_summary_is_a_warning_and_unwritable_outputs_an_error(reports_project, cli, tmp_path):
    env = github_env(tmp_path, GITHUB_STEP_SUMMARY=str(tmp_path / "missing" / "summary.md"))
    result = cli("matrix", "plan", "--skip", "*/t4/*", extra_env=env)
    assert result.code == 0, result.err
    assert f"::warning title=step summary not written::cannot append the step summary to {tmp_path}/missing/" \
           "summary.md: No such file or directory; the build itself is not affected" in result.err
    env = github_env(tmp_path, GITHUB_OUTPUT=str(tmp_path / "missing" / "out.txt"))
    result = cli("matrix", "plan", "--skip", "*/t4/*", extra_env=env)
    assert result.code == 4
    assert result.err.strip().splitlines()[-1] == (
        f"fleetbuild: error: cannot write the step outputs to $GITHUB_OUTPUT ({tmp_path}/missing/out.txt): "
        "No such file or directory")
    assert "Traceback" not in result.err


class FailOneJob:
    """A plugin whose before_build refuses one job with a message carrying a presigned URL."""

    @hookimpl
    def fleetbuild_before_build(self, job, host):
        if job == "conv/t4/fp16":
            raise FleetbuildError(f"license server refused: {PRESIGNED}")


def test_github_build_groups_errors_masks_and_report(reports_project, cli, tmp_path):
    import_or_require("tensorrt_rtx", "pip install 'fleetbuild[rtx]' (make test does)")
    result = cli("matrix", "build", "--local", "--only", "conv/*/{fp16,fp32}", "--report", "report.html",
                 plugins=[FailOneJob()], extra_env=github_env(tmp_path))
    assert result.code == 1, result.err
    err = result.err
    assert "\x1b[" not in result.out + err
    groups = re.findall(r"^::group::(.*)$", err, re.M)
    assert sorted(g.split()[0] + " " + g.split()[1] for g in groups) == [
        "FAILED conv/t4/fp16", "built conv/a100/fp16", "built conv/a100/fp32", "built conv/t4/fp32"]
    assert err.count("::endgroup::") == 4
    assert "[INFO] Engine generation completed" in err                 # the log tail, inside the group
    signature = PRESIGNED.split("X-Amz-Signature=")[1].split("&")[0]
    assert signature not in err and "X-Amz-Signature=***" in err       # redacted wherever it would show
    conv = line_of(reports_project, "[models.conv]")
    assert f"::error file=fleet.toml,line={conv},title=build failed%3A conv/t4/fp16::plugin: license server" in err
    out = outputs(tmp_path)
    assert (out["built"], out["failed"], out["cached"]) == ("3", "1", "0")
    summary = (tmp_path / "summary.md").read_text()
    assert "- `conv/t4/fp16` (failed, localhost): license server refused" in summary
    assert re.search(r"\| conv \| fp32 ✅ built [\d.]+ KiB [\d.]+ s<br>fp16 ❌ failed", summary)
    html = (tmp_path / "report.html").read_text()
    assert "tensorrt-rtx 1." in html and 'data-job="conv/a100/fp16" data-status="built"' in html


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(html: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
                           html.as_uri()], capture_output=True, text=True, timeout=120)


def test_html_report_renders_in_chromium(reports_project, cli, tmp_path):
    require(chromium() is not None, "Chromium", "make test-deps (apt-get install chromium)")
    result = cli("matrix", "plan", "--report", "plan.html")
    assert result.code == 1
    html = tmp_path / "plan.html"
    text = html.read_text()
    assert "<script" not in text and "<link" not in text and "@import" not in text and "url(" not in text
    assert not re.search(r"(src|href)=", text)                               # self-contained
    dom = render(html, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    planned = json.loads(cli("matrix", "plan", "--json").out)["jobs"]
    for job in planned:                                                      # every job is in the page
        assert f'data-job="{job["id"]}" data-status="{job["status"]}"' in dom.stdout, job["id"]
    assert dom.stdout.count("<details") == len(planned)
    assert "rtx-turing-fp32-gemm" in dom.stdout and "gpu-fallback-without-dla" in dom.stdout
    shot = tmp_path / "plan.png"
    picture = render(html, tmp_path, f"--screenshot={shot}", "--window-size=1100,700")
    assert picture.returncode == 0 and shot.stat().st_size > 10_000, picture.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_to_an_unwritable_place_is_one_line(reports_project, cli, tmp_path):
    result = cli("matrix", "plan", "--report", str(tmp_path / "no" / "such" / "dir" / "r.html"))
    assert result.code == 4
    assert result.err.strip() == (f"fleetbuild: error: --report {tmp_path}/no/such/dir/r.html: cannot write the "
                                  "report: No such file or directory")
