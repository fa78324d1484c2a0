"""Shared test helpers: run the CLI in-process, write projects with real ONNX models."""
from __future__ import annotations

import importlib
import io
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "quickstart"))

import make_models  # noqa: E402  (the quickstart's model generator: one source for demo and tests)

from fleetbuild.cli import main  # noqa: E402


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"FLEETBUILD_CACHE_DIR": str(tmp_path / ".cache"), "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": "1",
            "HOME": str(tmp_path)}


@pytest.fixture
def cli(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """cli("matrix", "plan") runs fleetbuild in tmp_path and returns Result(code, out, err)."""
    monkeypatch.chdir(tmp_path)

    def run(*argv: str, plugins=(), extra_env=None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), env={**env, **(extra_env or {})}, stdout=out, stderr=err, plugins=plugins)
        return Result(code, out.getvalue(), err.getvalue())
    return run


class Project:
    """A fleet.toml project in a temp dir with the quickstart models written to models/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        make_models.write_all(root / "models")

    def write(self, text: str, name: str = "fleet.toml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


MINIMAL = """
[project]
name = "demo"

[models.conv]
onnx = "models/conv_bn_relu.onnx"

[matrix]
targets = ["t4"]
"""


@pytest.fixture
def minimal() -> str:
    """A valid fleet.toml: one model (conv_bn_relu) for one target (t4)."""
    return MINIMAL


def require(available: bool, what: str, how: str) -> None:
    """Skip when a real component is missing, except under CI=true, where that fails the run."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required when CI=true: {how}")
    pytest.skip(f"{what} not available ({how})")


def import_or_require(module: str, how: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        require(False, f"Python module {module}", how)
