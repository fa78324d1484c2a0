"""Malformed input: each gives exactly one line naming file, key and fix, the right exit code, no traceback."""
from __future__ import annotations

import pytest

BASE_MODEL = '[models.conv]\nonnx = "models/conv_bn_relu.onnx"\n'
BASE = '[project]\nname = "demo"\n' + BASE_MODEL


def cfg(extra: str, base: str = BASE) -> str:
    return base + extra


CASES = [
    # (id, fleet.toml text, exact error line after "fleetbuild: error: ", exit code)
    ("toml-syntax", '[project]\nname = "demo"\nversion = \n',
     "fleet.toml:3:11: TOML syntax error: Invalid value", 3),
    ("toml-duplicate-key", '[project]\nname = "a"\nname = "b"\n',
     "fleet.toml:3:11: TOML syntax error: Cannot overwrite a value", 3),
    ("unknown-table", cfg('[modles.x]\nonnx = "a.onnx"\n'),
     "fleet.toml: modles: unknown table (did you mean 'models'?)", 3),
    ("missing-project", BASE_MODEL + '[matrix]\ntargets = ["t4"]\n',
     "fleet.toml: project: required table is missing (add [project] with name = \"...\" and version = \"...\")", 3),
    ("project-name-type", '[project]\nname = 5\n',
     "fleet.toml: project.name: expected a name of letters, digits, '.', '_' and '-' (starting with a letter "
     "or digit, at most 64 characters), got integer 5", 3),
    ("project-name-chars", '[project]\nname = "my project"\n',
     "fleet.toml: project.name: expected a name of letters, digits, '.', '_' and '-' (starting with a letter "
     "or digit, at most 64 characters), got string 'my project'", 3),
    ("project-version-chars", '[project]\nname = "a"\nversion = "../1.0 beta"\n',
     "fleet.toml: project.version: expected a version of letters, digits, '.', '_', '+' and '-' (starting with a "
     "letter or digit, at most 64 characters), got string '../1.0 beta'", 3),
    ("project-unknown-key", '[project]\nname = "a"\nverison = "1"\n',
     "fleet.toml: project.verison: unknown key (did you mean 'version'?)", 3),
    ("defaults-unknown-key", cfg('[defaults]\nworksapce = "1GiB"\n[matrix]\ntargets = ["t4"]\n'),
     "fleet.toml: defaults.worksapce: unknown key (did you mean 'workspace'?)", 3),
    ("defaults-size", cfg('[defaults]\nworkspace = "lots"\n'),
     "fleet.toml: defaults.workspace: expected a size: bytes as an integer or a string like \"512MiB\" or "
     "\"2GiB\", got string 'lots'", 3),
    ("defaults-level-range", cfg('[defaults]\nbuilder_optimization_level = 9\n'),
     "fleet.toml: defaults.builder_optimization_level: expected an integer from 0 to 5, got integer 9", 3),
    ("defaults-backend", cfg('[defaults]\nbackend = "tensorrt-rt"\n'),
     "fleet.toml: defaults.backend: expected one of 'tensorrt', 'tensorrt-rtx', got string 'tensorrt-rt' "
     "(did you mean 'tensorrt-rtx'?)", 3),
    ("defaults-bool", cfg('[defaults]\ntiming_cache = "yes"\n'),
     "fleet.toml: defaults.timing_cache: expected true or false, got string 'yes'", 3),
    ("defaults-precision", cfg('[defaults]\nprecisions = ["fp64"]\n'),
     "fleet.toml: defaults.precisions: expected an array of precisions (element 0: one of 'fp32', 'tf32', "
     "'fp16', 'bf16', 'int8', 'fp8'), got array ['fp64'] (did you mean 'fp16'?)", 3),
    ("defaults-precisions-empty", cfg('[defaults]\nprecisions = []\n'),
     "fleet.toml: defaults.precisions: expected a non-empty array of precisions, got array []", 3),
    ("hw-level", cfg('[defaults]\nhardware_compatibility_level = "ampere+"\n'),
     "fleet.toml: defaults.hardware_compatibility_level: expected one of 'none', 'ampere_plus', "
     "'same_compute_capability', got string 'ampere+' (did you mean 'ampere_plus'?)", 3),
    ("model-missing-onnx", '[project]\nname = "a"\n[models.m]\nprecisions = ["fp16"]\n',
     "fleet.toml: models.m.onnx: required key is missing (add onnx = \"path/to/model.onnx\")", 3),
    ("model-onnx-type", '[project]\nname = "a"\n[models.m]\nonnx = 5\n',
     "fleet.toml: models.m.onnx: expected a non-empty string, got integer 5", 3),
    ("model-name", '[project]\nname = "a"\n[models."a;rm -rf ~"]\nonnx = "x.onnx"\n',
     "fleet.toml: models.\"a;rm -rf ~\": expected a name of letters, digits, '.', '_' and '-' (starting with a letter or "
     "digit, at most 64 characters), got string 'a;rm -rf ~'", 3),
    ("model-precisions-dup", cfg('precisions = ["fp16", "fp16"]\n'),
     "fleet.toml: models.conv.precisions: expected an array of precisions without duplicates ('fp16' repeats), "
     "got array ['fp16', 'fp16']", 3),
    ("model-unknown-key", cfg('calibraton = "c/*.npy"\n'),
     "fleet.toml: models.conv.calibraton: unknown key (did you mean 'calibration'?)", 3),
    ("inputs-missing-max", cfg('inputs.images = { min = [1, 3, 32, 32], opt = [1, 3, 32, 32] }\n'),
     "fleet.toml: models.conv.inputs.images.max: required key is missing (give min, opt and max shapes)", 3),
    ("inputs-order", cfg('inputs.x = { min = [8, 64], opt = [4, 64], max = [32, 64] }\n'),
     "fleet.toml: models.conv.inputs.x: dimension 0 must satisfy min <= opt <= max, got 8, 4, 32", 3),
    ("inputs-rank", cfg('inputs.x = { min = [1, 64], opt = [4, 64], max = [32, 64, 1] }\n'),
     "fleet.toml: models.conv.inputs.x: min, opt and max have different ranks (2, 2, 3)", 3),
    ("inputs-zero", cfg('inputs.x = { min = [0, 64], opt = [4, 64], max = [32, 64] }\n'),
     "fleet.toml: models.conv.inputs.x.min: expected a shape of positive integers: [1, 3, 224, 224] or "
     "\"1x3x224x224\", got array [0, 64]", 3),
    ("inputs-string", cfg('inputs.x = "1x3xA"\n'),
     "fleet.toml: models.conv.inputs.x: expected a shape like [1, 3, 224, 224] or \"1x3x224x224\", or a table "
     "{min = ..., opt = ..., max = ...}, got string '1x3xA'", 3),
    ("matrix-no-targets", cfg('[matrix]\nmodels = ["conv"]\n'),
     "fleet.toml: matrix.targets: required key is missing (add targets = [\"t4\", \"a100\", ...]; "
     "`fleetbuild targets` lists them)", 3),
    ("matrix-unknown-target", cfg('[matrix]\ntargets = ["a10"]\n'),
     "fleet.toml: matrix.targets[0]: unknown target 'a10' (did you mean 'a100'?)", 3),
    ("matrix-unknown-model", cfg('[matrix]\nmodels = ["cnv"]\ntargets = ["t4"]\n'),
     "fleet.toml: matrix.models[0]: unknown model 'cnv' (did you mean 'conv'?)", 3),
    ("matrix-exclude-type", cfg('[matrix]\ntargets = ["t4"]\n[matrix.exclude]\nmodel = "conv"\n'),
     "fleet.toml: matrix.exclude: expected an array of non-empty tables, like [{ model = \"a\", target = "
     "\"nano\" }], got table {'model': 'conv'}", 3),
    ("matrix-exclude-key", cfg('[matrix]\ntargets = ["t4"]\nexclude = [{ targt = "t4" }]\n'),
     "fleet.toml: matrix.exclude[0].targt: unknown key (did you mean 'target'?)", 3),
    ("matrix-include-key", cfg('[matrix]\ntargets = ["t4"]\ninclude = [{ target = "t4", dla = 0 }]\n'),
     "fleet.toml: matrix.include[0].dla: unknown key (did you mean 'dla_core'?)", 3),
    ("matrix-include-option-type", cfg('[matrix]\ntargets = ["t4"]\ninclude = [{ target = "t4", workspace = true }]\n'),
     "fleet.toml: matrix.include[0].workspace: expected a size: bytes as an integer or a string like \"512MiB\" "
     "or \"2GiB\", got boolean True", 3),
    ("matrix-include-unknown-target", cfg('[matrix]\ntargets = ["t4"]\ninclude = [{ model = "conv", target = "h200", precision = "fp16" }]\n'),
     "fleet.toml: matrix.include[0].target: unknown target 'h200' (did you mean 'h100'?)", 3),
    ("matrix-include-incomplete", cfg('[matrix]\ntargets = ["t4"]\ninclude = [{ model = "conv", target = "t4", variant = "dla" }]\n'),
     "fleet.toml: matrix.include[0]: adds a new job but does not name its precision (a new job needs model, "
     "target and precision; to change existing jobs, name only values they already have)", 3),
    ("matrix-all-excluded", cfg('[matrix]\ntargets = ["t4"]\nexclude = [{ model = "conv" }]\n'),
     "fleet.toml: matrix: no jobs left after exclude (check matrix.exclude and the models' precisions)", 3),
    ("inventory-missing", cfg('[matrix]\ntargets = ["t4"]\n[inventory]\npath = "hosts/inv.ini"\n'),
     "fleet.toml: inventory.path: file not found: 'hosts/inv.ini' (resolved to {root}/hosts/inv.ini)", 3),
    ("target-new-incomplete", cfg('[matrix]\ntargets = ["t4"]\n[targets.jetson-thor]\nplatform = "jetson"\n'),
     "fleet.toml: targets.jetson-thor.arch: required key is missing", 3),
    ("target-cc-float", cfg('[matrix]\ntargets = ["t4"]\n[targets.t4]\ncompute_capability = 7.5\n'),
     "fleet.toml: targets.t4.compute_capability: expected a compute capability like \"8.6\" (a string: 8.7 and "
     "8.70 are not the same), got float 7.5", 3),
    ("target-rtx-h100", cfg('[matrix]\ntargets = ["t4"]\n[targets.h100]\nbackends = ["tensorrt", "tensorrt-rtx"]\n'),
     "fleet.toml: targets.h100.backends: tensorrt-rtx cannot build for compute capability 9.0 (it targets 7.5, "
     "8.0, 8.6, 8.9, 12.0, 12.1; remove 'tensorrt-rtx')", 3),
    ("target-range", cfg('[matrix]\ntargets = ["t4"]\n[targets.t4]\ntensorrt = ">=banana"\n'),
     "fleet.toml: targets.t4.tensorrt: expected a version range like \">=8.6\", \">=8.2,<8.3\" or \"==10.3.*\", "
     "got string '>=banana'", 3),
    ("target-range-empty", cfg('[matrix]\ntargets = ["t4"]\n[targets.t4]\ntensorrt = ">=99"\n'),
     "fleet.toml: targets.t4.tensorrt: range '>=99' allows no known TensorRT release (newest known: 11.4.1; add newer "
     "releases to targets/_tensorrt.toml)", 3),
    ("target-extends", cfg('[matrix]\ntargets = ["t4"]\n[targets.t4x]\nextends = "t5"\n'),
     "fleet.toml: targets.t4x.extends: unknown target 't5' (did you mean 't4'?)", 3),
    ("layers-missing-library", cfg('[layers.nms]\nops = ["NMS"]\n'),
     "fleet.toml: layers.nms: give either library = \"/path/on/every/host.so\" or [[layers.nms.libraries]] "
     "tables (path, arch, tensorrt) (libraries are staged to the hosts and shipped to devices; library names a "
     "file already installed on every host)", 3),
    ("layers-both-forms", cfg('[layers.nms]\nops = ["NMS"]\nlibrary = "/x.so"\n[[layers.nms.libraries]]\n'
                              'path = "models/conv_bn_relu.onnx"\narch = "x86_64"\ntensorrt = ">=10"\n'),
     "fleet.toml: layers.nms: library and libraries cannot both be given (libraries are staged to the hosts and "
     "shipped to devices; library names a file already installed on every host)", 3),
    ("layers-library-missing-file", cfg('[layers.nms]\nops = ["NMS"]\n[[layers.nms.libraries]]\n'
                                        'path = "plugins/libnms.so"\narch = "x86_64"\ntensorrt = ">=10"\n'),
     "fleet.toml: layers.nms.libraries[0].path: file not found: 'plugins/libnms.so' (resolved to "
     "{root}/plugins/libnms.so)", 3),
    ("layers-library-arch", cfg('[layers.nms]\nops = ["NMS"]\n[[layers.nms.libraries]]\n'
                                'path = "models/conv_bn_relu.onnx"\narch = "arm64"\ntensorrt = ">=10"\n'),
     "fleet.toml: layers.nms.libraries[0].arch: expected one of 'x86_64', 'aarch64', got string 'arm64' "
     "(did you mean 'aarch64'?)", 3),
    ("layers-library-range", cfg('[layers.nms]\nops = ["NMS"]\n[[layers.nms.libraries]]\n'
                                 'path = "models/conv_bn_relu.onnx"\narch = "x86_64"\ntensorrt = "~=10.1"\n'),
     "fleet.toml: layers.nms.libraries[0].tensorrt: expected a version range of >=, <=, >, <, == or != clauses, "
     "like \">=10.0,<11\", got string '~=10.1'", 3),
    ("plugin-module-missing", cfg('[matrix]\ntargets = ["t4"]\n[plugins]\nload = ["no_such_plugin_mod"]\n'),
     "plugin module 'no_such_plugin_mod' could not be imported: No module named 'no_such_plugin_mod'", 5),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_config(case, project, cli):
    _, text, expected, code = case
    if "[matrix]" not in text and text.startswith("[project]") and "[models" in text:
        text += '[matrix]\ntargets = ["t4"]\n'
    project.write(text)
    result = cli("matrix", "plan")
    assert result.err == f"fleetbuild: error: {expected.replace('{root}', str(project.root))}\n"
    assert result.code == code
    assert "Traceback" not in result.err
    assert result.out == ""


def test_at_least_thirty_cases():
    assert len(CASES) + len(OTHER_CASES) >= 30


OTHER_CASES = [
    # (id, argv, file content or None, exact error, exit code)
    ("config-not-found", ("-c", "nope.toml", "matrix", "plan"), None,
     "nope.toml: file not found (resolved to {root}/nope.toml) (create one with `fleetbuild init`, or pass -c FILE)", 3),
    ("config-directory", ("-c", "models", "matrix", "plan"), None,
     "models: is a directory, not a TOML file", 3),
    ("config-not-utf8", ("matrix", "plan"), b'[project]\nname = "\xff"\n',
     "fleet.toml: not UTF-8 text (byte 18); TOML files must be UTF-8", 3),
    ("only-matches-nothing", ("matrix", "plan", "--only", "resnt/*"), "minimal",
     "--only 'resnt/*' matches no job (ids look like 'conv/t4/fp32'; `fleetbuild matrix plan` lists them)", 2),
    ("skip-matches-nothing", ("matrix", "plan", "--skip", "int4"), "minimal",
     "--skip 'int4' matches no job (ids look like 'conv/t4/fp32'; `fleetbuild matrix plan` lists them)", 2),
    ("selector-unbalanced", ("matrix", "plan", "--only", "conv/{t4,a100/*"), "minimal",
     "selector 'conv/{t4,a100/*': '{' without a matching '}'", 2),
    ("selector-close-brace", ("matrix", "plan", "--only", "conv/t4}/*"), "minimal",
     "selector 'conv/t4}/*': '}' without a matching '{'", 2),
    ("selector-empty", ("matrix", "plan", "--only", " "), "minimal",
     "empty selector: give a job id pattern like 'resnet/*/fp16'", 2),
]


@pytest.mark.parametrize("case", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_malformed_cli_input(case, project, cli, minimal):
    _, argv, content, expected, code = case
    if content == "minimal":
        project.write(minimal)
    elif isinstance(content, bytes):
        (project.root / "fleet.toml").write_bytes(content)
    result = cli(*argv)
    assert result.err == f"fleetbuild: error: {expected.replace('{root}', str(project.root))}\n"
    assert result.code == code
    assert "Traceback" not in result.err


def test_debug_shows_traceback(project, cli):
    project.write('[project]\nname = 5\n')
    result = cli("--debug", "matrix", "plan")
    assert result.code == 3
    assert "Traceback (most recent call last)" in result.err
    assert result.err.rstrip().splitlines()[-1].startswith("fleetbuild: error: fleet.toml: project.name")


def test_argparse_usage_error_exit_2(cli):
    result = cli("matrix", "explode")
    assert result.code == 2
    assert "invalid choice: 'explode'" in result.err
