"""The plugin system: every hook documented and tested, loading, blocking, errors, each hook's contract."""
from __future__ import annotations

import inspect
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from fleetbuild.compat import LayerProvider, Problem
from fleetbuild.errors import ConfigError, FleetbuildError, PluginError
from fleetbuild.plugin import hookimpl, spec
from fleetbuild.plugin.manager import Plugins
from fleetbuild.report import Reporter
from fleetbuild.targets import Target

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, fn in inspect.getmembers(spec, inspect.isfunction) if name.startswith("fleetbuild_"))


def test_every_hook_has_a_docstring_docs_section_and_a_test():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    this_file = Path(__file__).read_text()
    assert len(HOOKS) == 8
    for name in HOOKS:
        assert (getattr(spec, name).__doc__ or "").strip(), f"{name} has no docstring"
        assert f"### `{name}`" in docs, f"docs/plugins.md has no section for {name}"
        assert re.search(rf"def test_hook_{name}\b", this_file), f"no test_hook_{name} in {__file__}"


# ---- fleetbuild_targets -----------------------------------------------------------------------

JETSON_THOR = Target(name="thor", description="Jetson AGX Thor (stand-in data)", platform="jetson",
                     arch="aarch64", compute_capability="11.0", gpu_match=("*Thor*",),
                     precisions=("fp32", "fp16", "fp8"), dla_cores=0, tensorrt=">=10.13",
                     inventory_group="thor", backends=("tensorrt",))


class ThorPlugin:
    @hookimpl
    def fleetbuild_targets(self):
        return [JETSON_THOR]


def test_hook_fleetbuild_targets(project, cli, minimal):
    result = cli("targets", "--json", plugins=[ThorPlugin()])
    targets = {t["name"]: t for t in json.loads(result.out)["targets"]}
    assert targets["thor"]["source"] == "plugin test_plugins.ThorPlugin"
    assert "t4" in targets  # shipped ones stay
    project.write(minimal.replace('targets = ["t4"]', 'targets = ["thor"]\n[targets.thor]\ninventory_group = "agx-thor"'))
    result = cli("matrix", "plan", "--json", plugins=[ThorPlugin()])
    assert result.code == 0, result.err
    assert [j["id"] for j in json.loads(result.out)["jobs"]] == ["conv/thor/fp32"]
    assert "agx-thor" in cli("targets", plugins=[ThorPlugin()]).out


def test_targets_hook_wrong_type_is_plugin_error(cli):
    class Bad:
        @hookimpl
        def fleetbuild_targets(self):
            return ["thor"]
    result = cli("targets", plugins=[Bad()])
    assert result.code == 5
    assert "fleetbuild_targets returned str, expected fleetbuild.targets.Target" in result.err


# ---- fleetbuild_store -------------------------------------------------------------------------

class MemoryStore:
    def __init__(self, url):
        self.url = url


class MemoryStorePlugin:
    @hookimpl
    def fleetbuild_store(self, url, options, root, source, env):
        if url.startswith("mem://"):
            if set(options) - {"size"}:
                raise ConfigError(source, "store." + sorted(set(options) - {"size"})[0], "unknown key")
            return MemoryStore(url)
        return None


def test_hook_fleetbuild_store(tmp_path):
    plugins = Plugins(entry_points=False, objects=[MemoryStorePlugin()])
    store = plugins.store_for("mem://x", {}, tmp_path, "fleet.toml", {})
    assert isinstance(store, MemoryStore)
    local = plugins.store_for("file://./artifacts", {}, tmp_path, "fleet.toml", {})
    assert local.root == tmp_path / "artifacts"
    with pytest.raises(ConfigError, match=r"f.toml: store.url: no store plugin handles 's3://' URLs "
                                          r"\(install fleetbuild\[s3\], or load the plugin with -p "):
        plugins.store_for("s3://bucket/x", {}, tmp_path, "f.toml", {})
    with pytest.raises(ConfigError, match="f.toml: store.colour: unknown key"):
        plugins.store_for("mem://x", {"colour": 1}, tmp_path, "f.toml", {})
    with pytest.raises(ConfigError, match="f.toml: store.region: unknown key for a file:// store"):
        plugins.store_for("file://x", {"region": "eu"}, tmp_path, "f.toml", {})


# ---- fleetbuild_layer_providers ---------------------------------------------------------------

class AcmeLayers:
    @hookimpl
    def fleetbuild_layer_providers(self, config):
        return [LayerProvider("acme-nms", ("acme::FancyNMS",), "/opt/acme/libnms.so")]


def test_hook_fleetbuild_layer_providers(project, cli):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyNMS", ["x"], ["y"], domain="acme")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("acme", 1)])
    model.ir_version = 8
    onnx.save(model, str(project.root / "models" / "custom.onnx"))
    project.write('[project]\nname = "p"\n[models.det]\nonnx = "models/custom.onnx"\nlayers = ["acme-nms"]\n'
                  '[matrix]\ntargets = ["t4"]\n')
    assert cli("matrix", "plan").code == 1                      # without the plugin: layer-unknown
    assert cli("matrix", "plan", plugins=[AcmeLayers()]).code == 0
    project.write('[project]\nname = "p"\n[layers.acme-nms]\nlibrary = "x.so"\nops = ["X"]\n'
                  '[models.det]\nonnx = "models/custom.onnx"\n[matrix]\ntargets = ["t4"]\n')
    result = cli("matrix", "plan", plugins=[AcmeLayers()])
    assert result.code == 3
    assert "layer provider 'acme-nms' is defined twice" in result.err


# ---- fleetbuild_check_job ---------------------------------------------------------------------

class NoNanoFp32:
    @hookimpl
    def fleetbuild_check_job(self, ctx):
        if ctx.target.name == "nano" and ctx.job.precision == "fp32":
            return [Problem("site-policy", "fp32 is too slow on Nano", "use fp16")]
        return []


def test_hook_fleetbuild_check_job(project, cli, minimal):
    project.write(minimal.replace('targets = ["t4"]', 'targets = ["t4", "nano"]'))
    result = cli("matrix", "plan", "--json", plugins=[NoNanoFp32()])
    jobs = {j["id"]: j for j in json.loads(result.out)["jobs"]}
    assert result.code == 1
    assert jobs["conv/nano/fp32"]["problems"] == [
        {"code": "site-policy", "severity": "error", "message": "fp32 is too slow on Nano", "hint": "use fp16"}]
    assert jobs["conv/t4/fp32"]["status"] == "ok"


def test_check_job_exception_is_plugin_error_naming_plugin(project, cli, minimal):
    class Broken:
        @hookimpl
        def fleetbuild_check_job(self, ctx):
            raise KeyError("oops")
    project.write(minimal)
    result = cli("matrix", "plan", plugins=[Broken()])
    assert result.code == 5
    assert result.err == ("fleetbuild: error: plugin 'test_plugins.test_check_job_exception_is_plugin_error_"
                          "naming_plugin.<locals>.Broken' failed in fleetbuild_check_job: KeyError: 'oops' "
                          "(--debug shows the traceback)\n")


# ---- build and publish events -----------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def fleetbuild_before_build(self, job, host):
        if host == "forbidden":
            raise FleetbuildError(f"{job} may not build on {host}")
        self.events.append(("before", job, host))

    @hookimpl
    def fleetbuild_after_build(self, job, result):
        self.events.append(("after", job, result))

    @hookimpl
    def fleetbuild_after_publish(self, release):
        self.events.append(("published", release["version"]))


def test_hook_fleetbuild_before_build():
    recorder = Recorder()
    plugins = Plugins(entry_points=False, objects=[recorder])
    plugins.before_build("m/t4/fp16", "gpu-1")
    assert recorder.events == [("before", "m/t4/fp16", "gpu-1")]
    with pytest.raises(FleetbuildError, match="m/t4/fp16 may not build on forbidden"):
        plugins.before_build("m/t4/fp16", "forbidden")


def test_hook_fleetbuild_after_build():
    recorder = Recorder()
    Plugins(entry_points=False, objects=[recorder]).after_build("m/t4/fp16", {"status": "built"})
    assert recorder.events == [("after", "m/t4/fp16", {"status": "built"})]


def test_hook_fleetbuild_after_publish():
    recorder = Recorder()
    Plugins(entry_points=False, objects=[recorder]).after_publish({"version": "1.2.0"})
    assert recorder.events == [("published", "1.2.0")]


# ---- fleetbuild_reporter ----------------------------------------------------------------------

class CountingReporter(Reporter):
    def __init__(self):
        self.plans = []

    def plan_ready(self, plan):
        self.plans.append([j.job.id for j in plan.jobs])


class CountingReporterPlugin:
    def __init__(self):
        self.reporter = CountingReporter()

    @hookimpl
    def fleetbuild_reporter(self, config, output):
        return self.reporter


def test_hook_fleetbuild_reporter(project, cli, minimal):
    project.write(minimal)
    plugin = CountingReporterPlugin()
    result = cli("matrix", "plan", plugins=[plugin])
    assert plugin.reporter.plans == [["conv/t4/fp32"]]
    assert "conv/t4/fp32" in result.out                     # the built-in terminal reporter still ran
    plugin = CountingReporterPlugin()
    result = cli("-p", "no:builtin-terminal", "matrix", "plan", plugins=[plugin])
    assert result.code == 0 and result.out == "" and plugin.reporter.plans == [["conv/t4/fp32"]]


# ---- loading ----------------------------------------------------------------------------------

def _write_dist(site: Path, module: str, body: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[fleetbuild]\n{module} = {module}\n")


THOR_MODULE = """
from fleetbuild.plugin import hookimpl
from fleetbuild.targets import Target

@hookimpl
def fleetbuild_targets():
    return [Target(name="thor", description="", platform="jetson", arch="aarch64", compute_capability="11.0",
                   gpu_match=("*Thor*",), precisions=("fp16",), dla_cores=0, tensorrt=">=10.13",
                   inventory_group="thor", backends=("tensorrt",))]
"""


def test_entry_point_plugins_load_unless_disabled(tmp_path, cli, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _write_dist(site, "fb_thor_plugin", THOR_MODULE)
    monkeypatch.syspath_prepend(str(site))
    enabled = {"FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": ""}
    listing = json.loads(cli("plugins", "--json", extra_env=enabled).out)["plugins"]
    assert {"name": "fb_thor_plugin", "kind": "entry-point", "origin": "fb_thor_plugin",
            "hooks": ["fleetbuild_targets"]} in listing
    assert "thor" in cli("targets", extra_env=enabled).out
    assert "thor" not in cli("targets").out                               # env var set by the fixture
    assert "thor" not in cli("--no-entry-points", "targets", extra_env=enabled).out
    assert "thor" not in cli("-p", "no:fb_thor_plugin", "targets", extra_env=enabled).out
    sys.modules.pop("fb_thor_plugin", None)


def test_broken_entry_point_names_the_distribution(tmp_path, cli, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _write_dist(site, "fb_broken_plugin", "raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(site))
    result = cli("targets", extra_env={"FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": ""})
    assert result.code == 5
    assert result.err == ("fleetbuild: error: plugin 'fb_broken_plugin' (entry point of fb_broken_plugin) failed "
                          "to import: RuntimeError: boom (disable entry-point plugins with "
                          "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD=1 or block it with -p no:fb_broken_plugin)\n")


def test_config_plugins_load_and_p_flag(tmp_path, project, cli, minimal, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "fb_cfg_plugin.py").write_text(THOR_MODULE)
    monkeypatch.syspath_prepend(str(site))
    project.write(minimal.replace('targets = ["t4"]', 'targets = ["thor"]\n[plugins]\nload = ["fb_cfg_plugin"]'))
    result = cli("matrix", "plan")
    assert result.code == 1 and "conv/thor/fp32" in result.out   # thor has no fp32: precision-unsupported
    listing = json.loads(cli("plugins", "--json").out)["plugins"]
    assert {"name": "fb_cfg_plugin", "kind": "module", "origin": "fb_cfg_plugin",
            "hooks": ["fleetbuild_targets"]} in listing
    assert [p["name"] for p in listing][:8] == ["builtin-targets", "builtin-local-store", "builtin-layers",
                                                 "builtin-compat", "builtin-github", "builtin-terminal",
                                                 "builtin-json", "builtin-html"]
    sys.modules.pop("fb_cfg_plugin", None)


def test_blocking_builtin_targets(project, cli, minimal):
    project.write(minimal)
    result = cli("-p", "no:builtin-targets", "matrix", "plan")
    assert result.code == 3
    assert result.err == "fleetbuild: error: fleet.toml: matrix.targets[0]: unknown target 't4' (see " \
                         "`fleetbuild targets`, or define it as [targets.t4])\n"


def test_plugin_error_class():
    assert PluginError("x").exit_code == 5
