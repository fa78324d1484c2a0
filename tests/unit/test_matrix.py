"""Matrix expansion against the examples in GitHub Actions' documentation ("Using a matrix for your
jobs": expanding, adding and excluding configurations), then fleetbuild's own dimensions."""
from __future__ import annotations

from pathlib import Path

import pytest

from fleetbuild.config.fleet import parse_config, read_fleet_toml
from fleetbuild.errors import ConfigError
from fleetbuild.config.matrix import expand, jobs_from_config
from fleetbuild.plugin.manager import Plugins


def test_gha_include_example():
    # docs: fruit x animal with five include entries -> six jobs, in this order
    combos = expand({"fruit": ["apple", "pear"], "animal": ["cat", "dog"]}, include=[
        {"color": "green"},
        {"color": "pink", "animal": "cat"},
        {"fruit": "apple", "shape": "circle"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ])
    assert combos == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_gha_expanding_configurations():
    # docs: os x node, include adds npm: 6 to windows-latest/16 only
    combos = expand({"os": ["windows-latest", "ubuntu-latest"], "node": [14, 16]},
                    include=[{"os": "windows-latest", "node": 16, "npm": 6}])
    assert len(combos) == 4
    assert [c for c in combos if "npm" in c] == [{"os": "windows-latest", "node": 16, "npm": 6}]


def test_gha_adding_configurations():
    # docs: an include whose values are not in the matrix adds a fifth job
    combos = expand({"os": ["windows-latest", "ubuntu-latest"], "node": [14, 16]},
                    include=[{"os": "windows-latest", "node": 17}])
    assert len(combos) == 5
    assert combos[-1] == {"os": "windows-latest", "node": 17}


def test_gha_excluding_configurations():
    # docs: 2 x 3 x 2 = 12 jobs, exclude one full match and a partial match of two -> 9
    combos = expand({"os": ["macos-latest", "windows-latest"], "version": [12, 14, 16],
                     "environment": ["staging", "production"]},
                    exclude=[{"os": "macos-latest", "version": 12, "environment": "production"},
                             {"os": "windows-latest", "version": 16}])
    assert len(combos) == 9
    assert {"os": "windows-latest", "version": 16, "environment": "staging"} not in combos
    assert {"os": "macos-latest", "version": 12, "environment": "staging"} in combos


def test_gha_include_can_add_back_excluded_and_only_include():
    combos = expand({"a": [1, 2]}, exclude=[{"a": 2}], include=[{"a": 2, "x": "y"}])
    assert combos == [{"a": 1}, {"a": 2, "x": "y"}]
    assert expand({}, include=[{"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]


def test_gha_added_values_can_be_overwritten_original_cannot():
    combos = expand({"a": [1]}, include=[{"x": 1}, {"x": 2}, {"a": 1, "x": 3}])
    assert combos == [{"a": 1, "x": 3}]


def _config(tmp_path: Path, text: str):
    (tmp_path / "fleet.toml").write_text(text)
    plugins = Plugins(entry_points=False)
    return parse_config(read_fleet_toml(tmp_path / "fleet.toml"), plugins.targets())


BASE = """
[project]
name = "p"
[defaults]
precisions = ["fp32", "fp16"]
workspace = "1GiB"
[models.a]
onnx = "a.onnx"
[models.b]
onnx = "b.onnx"
precisions = ["fp16", "int8"]
workspace = "2GiB"
"""


def test_jobs_follow_model_precisions_and_config_order(tmp_path):
    config = _config(tmp_path, BASE + '[matrix]\ntargets = ["orin", "t4"]\n')
    ids = [j.id for j in jobs_from_config(config)]
    assert ids == ["a/orin/fp32", "a/orin/fp16", "a/t4/fp32", "a/t4/fp16",
                   "b/orin/fp16", "b/orin/int8", "b/t4/fp16", "b/t4/int8"]


def test_option_layers_defaults_model_cell(tmp_path):
    config = _config(tmp_path, BASE + '[matrix]\ntargets = ["t4"]\n'
                     'include = [{ model = "b", target = "t4", workspace = "512MiB" }]\n')
    jobs = {j.id: j for j in jobs_from_config(config)}
    assert jobs["a/t4/fp16"].options.workspace == 1 << 30          # [defaults]
    assert jobs["b/t4/fp16"].options.workspace == 512 << 20        # cell beats model beats defaults
    assert jobs["a/t4/fp16"].options.builder_optimization_level == 3  # TensorRT's default filled in


def test_variant_include_adds_a_job_and_matrix_precisions_override(tmp_path):
    config = _config(tmp_path, BASE + '[matrix]\nmodels = ["a"]\ntargets = ["orin"]\nprecisions = ["fp16"]\n'
                     'include = [{ model = "a", target = "orin", precision = "fp16", variant = "dla", dla_core = 0 }]\n')
    jobs = jobs_from_config(config)
    assert [j.id for j in jobs] == ["a/orin/fp16", "a/orin/fp16+dla"]
    assert jobs[0].options.dla_core is None and jobs[1].options.dla_core == 0


def test_exclude_partial_match(tmp_path):
    config = _config(tmp_path, BASE + '[matrix]\ntargets = ["orin", "nano"]\n'
                     'exclude = [{ target = "nano", precision = "fp32" }, { model = "b", target = "nano" }]\n')
    assert [j.id for j in jobs_from_config(config)] == [
        "a/orin/fp32", "a/orin/fp16", "a/nano/fp16", "b/orin/fp16", "b/orin/int8"]


def test_duplicate_job_from_include_is_an_error(tmp_path):
    config = _config(tmp_path, BASE + '[matrix]\nmodels = ["a"]\ntargets = ["t4"]\n'
                     'include = [{ model = "a", target = "a100", precision = "fp16", workspace = 1 },'
                     '{ model = "a", target = "a100", precision = "fp16", workspace = 2 }]\n')
    with pytest.raises(ConfigError, match="two entries produce job 'a/a100/fp16'"):
        jobs_from_config(config)


def test_matrix_precisions_apply_to_every_model(tmp_path):
    config = _config(tmp_path, BASE + '[matrix]\ntargets = ["t4"]\nprecisions = ["int8"]\n')
    assert [j.id for j in jobs_from_config(config)] == ["a/t4/int8", "b/t4/int8"]   # a lists only fp32, fp16
