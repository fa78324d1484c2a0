"""Commands for hosts are built from argv with every piece quoted: hostile paths stay data."""
from __future__ import annotations

import subprocess

import pytest

from fleetbuild.build.dispatch import shell

HOSTILE = ["a b", "$(touch PWNED)", "`touch PWNED`", "x; touch PWNED", "it's", '"q"', "*", "~x", "a\nb"]


@pytest.mark.parametrize("value", HOSTILE)
def test_arguments_reach_the_program_unchanged(tmp_path, value):
    line = shell.command(["printf", "%s", value], env={"V": value}, cwd=str(tmp_path))
    proc = subprocess.run(["sh", "-c", line], capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout == value and proc.returncode == 0
    assert not (tmp_path / "PWNED").exists()


def test_home_relative_paths_expand_only_the_home(tmp_path):
    line = shell.command(["printf", "%s", "~/$(touch PWNED)/x"])
    proc = subprocess.run(["sh", "-c", line], capture_output=True, text=True, env={"HOME": str(tmp_path)},
                          cwd=tmp_path)
    assert proc.stdout == f"{tmp_path}/$(touch PWNED)/x"
    assert not (tmp_path / "PWNED").exists()


def test_exit_status_of_a_signalled_command_is_kept():
    proc = subprocess.run(["sh", "-c", shell.command(["sh", "-c", "kill -9 $$"])])
    assert proc.returncode == 137


def test_sequence_runs_each_and_stops_after_an_interrupted_one(tmp_path):
    line = shell.sequence([["sh", "-c", "echo one >> log"], ["sh", "-c", "exit 10"], ["sh", "-c", "echo three >> log"],
                           ["sh", "-c", "exit 130"], ["sh", "-c", "echo five >> log"]], env={"X": "$(touch PWNED)"})
    proc = subprocess.run(["sh", "-c", line], cwd=tmp_path)
    assert proc.returncode == 130
    assert (tmp_path / "log").read_text() == "one\nthree\n" and not (tmp_path / "PWNED").exists()
