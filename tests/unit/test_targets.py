from __future__ import annotations

import pytest

from fleetbuild.config.fleet import parse_config, read_fleet_toml
from fleetbuild.errors import ConfigError
from fleetbuild.plugin.manager import Plugins
from fleetbuild.config.targets import load_target_file, shipped_targets
from fleetbuild.config.tensorrt_releases import facts, parse_version


def test_shipped_targets_match_the_facts():
    targets = {t.name: t for t in shipped_targets()}
    assert set(targets) >= {"t4", "a100", "orin", "nano", "h100", "l4", "xavier"}
    assert targets["t4"].compute_capability == "7.5" and "int8" in targets["t4"].precisions
    assert targets["nano"].compute_capability == "5.3" and "int8" not in targets["nano"].precisions
    assert targets["nano"].jetpack[0].python == "3.6" and targets["nano"].tensorrt == ">=8.2,<8.3"
    assert targets["orin"].dla_cores == 2 and targets["orin"].arch == "aarch64"
    assert "tensorrt-rtx" not in targets["h100"].backends
    assert all(t.inventory_group == t.name for t in targets.values())
    assert [j.jetpack for j in targets["orin"].jetpack] == ["5.1", "6.0", "6.1"]


def test_opset_limits():
    trt = facts("tensorrt")
    assert trt.opset_limit(parse_version("8.2.1")) == 13
    assert trt.opset_limit(parse_version("8.6.1")) == 17
    assert trt.opset_limit(parse_version("10.3.0")) == 20
    assert trt.opset_limit(parse_version("10.13.0")) == 24
    assert [str(v) for v in trt.allowed(">=8.2,<8.3")] == ["8.2.1", "8.2.5"]


def _registry(tmp_path, text):
    (tmp_path / "fleet.toml").write_text('[project]\nname = "p"\n[models.m]\nonnx = "m.onnx"\n' + text)
    return parse_config(read_fleet_toml(tmp_path / "fleet.toml"), Plugins(entry_points=False).targets()).targets


def test_override_and_extend(tmp_path):
    registry = _registry(tmp_path, '[matrix]\ntargets = ["t4"]\n[targets.orin]\ninventory_group = "jetson-orin"\n'
                         'tensorrt = ">=10"\n[targets.orin-nx]\nextends = "orin"\ndla_cores = 1\n'
                         '[targets.rtx4090]\nplatform = "rtx"\narch = "x86_64"\ncompute_capability = "8.9"\n'
                         'gpu_match = ["*4090*"]\nprecisions = ["fp32", "fp16"]\n')
    assert registry["orin"].inventory_group == "jetson-orin" and registry["orin"].tensorrt == ">=10"
    assert registry["orin"].compute_capability == "8.7"               # untouched fields kept
    assert registry["orin-nx"].dla_cores == 1 and registry["orin-nx"].inventory_group == "jetson-orin"
    assert registry["rtx4090"].backends == ("tensorrt", "tensorrt-rtx")  # derived from the CC
    assert registry["rtx4090"].inventory_group == "rtx4090"
    assert registry["rtx4090"].source.endswith("fleet.toml")


def test_broken_target_file_names_the_file(tmp_path):
    path = tmp_path / "thor.toml"
    path.write_text('platform = "jetson"\narch = "aarch64"\ncompute_capability = "11.0"\ngpu_match = ["*Thor*"]\n'
                    'precisions = ["fp16"]\ncolour = "green"\n')
    with pytest.raises(ConfigError) as err:
        load_target_file(path, "targets/thor.toml")
    assert str(err.value) == "targets/thor.toml: colour: unknown key"


def test_strongly_typed_is_known_from_backend_or_an_11_only_range():
    from fleetbuild.config.tensorrt_releases import strongly_typed

    assert strongly_typed("tensorrt-rtx", ">=8.0")
    assert strongly_typed("tensorrt", ">=11")
    assert not strongly_typed("tensorrt", ">=10")          # 10.x or 11.x: the host decides at dispatch
    assert not strongly_typed("tensorrt", ">=8.2,<8.3")
