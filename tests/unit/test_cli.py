"""CLI conventions users script against: --help/--version, global options anywhere, --json, init."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fleetbuild.cli import build_parser

COMMANDS = [("matrix",), ("matrix", "plan"), ("matrix", "stage"), ("matrix", "build"), ("hosts",), ("hosts", "probe"), ("hosts", "list"), ("publish",), ("keys",), ("keys", "generate"), ("artifacts",), ("artifacts", "list"), ("artifacts", "show"),
            ("artifacts", "verify"), ("artifacts", "gc"), ("artifacts", "export"), ("targets",), ("plugins",),
            ("inspect",), ("bundle",), ("init",), ("deploy",), ("pull",), ("matrix", "accuracy"),
            ("rollout",), *[("rollout", action) for action in ("start", "advance", "halt", "resume", "revert",
                                                               "status", "check", "grant")]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_on_every_command(cli, command):
    result = cli(*command, "--help")
    assert result.code == 0
    assert result.out.startswith("usage: fleetbuild " + " ".join(command))
    assert "-c FILE, --config FILE" in result.out          # global options shown everywhere


def test_every_subcommand_is_in_the_help_list():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(c[0] for c in COMMANDS if len(c) == 1)


def test_version(cli):
    from fleetbuild import __version__

    result = cli("--version")
    assert result.code == 0 and result.out == f"fleetbuild {__version__}\n"


def test_top_level_help_documents_exit_codes(cli):
    out = cli("--help").out
    assert "exit codes: 0 ok, 1 some jobs invalid or failed, 2 usage error, 3 configuration error," in out


def test_global_options_before_or_after_command(project, cli, minimal):
    project.write(minimal, "other.toml")
    for argv in (("-c", "other.toml", "matrix", "plan"), ("matrix", "plan", "-c", "other.toml"),
                 ("matrix", "-c", "other.toml", "plan")):
        result = cli(*argv)
        assert result.code == 0, (argv, result.err)
        assert "conv/t4/fp32" in result.out


def test_plan_json_to_file_and_stdout(project, cli, minimal):
    project.write(minimal)
    result = cli("matrix", "plan", "--json", "plan.json")
    assert result.code == 0
    assert "conv/t4/fp32" in result.out                       # table still printed
    data = json.loads((project.root / "plan.json").read_text())
    assert data["selected"] == 1 and data["jobs"][0]["id"] == "conv/t4/fp32"
    assert len(data["jobs"][0]["plan_key"]) == 64
    stdout = json.loads(cli("matrix", "plan", "--json").out)
    assert stdout == data


def test_table_output_not_a_terminal_has_no_escape_codes(project, cli, minimal):
    project.write(minimal)
    out = cli("matrix", "plan").out
    assert "\x1b[" not in out
    assert out.splitlines()[-1] == "1 jobs planned, 1 ok, 0 invalid"


def test_markup_in_user_text_is_shown_literally(project, cli):
    project.write('[project]\nname = "p"\n[models.conv]\nonnx = "models/[bold]x[/bold].onnx"\n'
                  '[matrix]\ntargets = ["t4"]\n')
    out = " ".join(cli("matrix", "plan").out.split())
    assert "models/[bold]x[/bold].onnx" in out


def test_init_writes_a_config_that_plans(tmp_path, cli):
    result = cli("init", "proj")
    assert result.code == 0
    assert (tmp_path / "proj" / "fleet.toml").exists() and (tmp_path / "proj" / "inventory.ini").exists()
    result = cli("-c", "proj/fleet.toml", "matrix", "plan", "--json")
    data = json.loads(result.out)
    assert result.code == 1                                    # the starter's model does not exist yet
    assert {p["code"] for j in data["jobs"] for p in j["problems"]} >= {"onnx-missing"}
    assert [j["id"] for j in data["jobs"]][:2] == ["classifier/t4/fp32", "classifier/t4/fp16"]


def test_init_refuses_to_overwrite(tmp_path, cli):
    (tmp_path / "fleet.toml").write_text("# mine\n")
    result = cli("init")
    assert result.code == 2
    assert result.err == "fleetbuild: error: fleet.toml already exists (use --force to overwrite)\n"
    assert (tmp_path / "fleet.toml").read_text() == "# mine\n"
    assert not (tmp_path / "inventory.ini").exists()
    assert cli("init", "--force").code == 0
    assert (tmp_path / "fleet.toml").read_text().startswith("# fleet.toml:")


def test_targets_table_and_json(cli):
    result = cli("targets")
    assert result.code == 0
    for name in ("t4", "a100", "orin", "nano", "h100", "l4", "xavier"):
        assert f" {name} " in result.out
    data = {t["name"]: t for t in json.loads(cli("targets", "--json").out)["targets"]}
    assert data["nano"]["jetpack"][0] == {"jetpack": "4.6", "l4t": "32.7", "ubuntu": "18.04", "cuda": "10.2",
                                          "tensorrt": "8.2.1", "python": "3.6"}
    assert data["t4"]["backends"] == ["tensorrt", "tensorrt-rtx"]


def test_installed_console_script_runs():
    """The `fleetbuild` entry point of the installed package (python -m as well)."""
    out = subprocess.run([sys.executable, "-m", "fleetbuild", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("fleetbuild ")


def test_large_plans_list_only_problem_jobs_unless_all(project, cli):
    models = "".join(f'[models.m{i}]\nonnx = "models/conv_bn_relu.onnx"\n' for i in range(30))
    project.write('[project]\nname = "p"\n[defaults]\nprecisions = ["fp16", "int8"]\n' + models +
                  '[matrix]\ntargets = ["t4", "nano"]\n')
    out = cli("matrix", "plan").out                       # 120 jobs: 60 int8 ones are invalid
    assert "m0/t4/fp16" not in out and "m0/nano/int8" in out
    assert "60 jobs without problems not listed (--all lists every job, --json writes them all)" in out
    assert out.splitlines()[-1] == "120 jobs planned, 60 ok, 60 invalid"
    assert "m0/t4/fp16" in cli("matrix", "plan", "--all").out
