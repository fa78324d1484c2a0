"""The FAKE TensorRT generations (tests/fixtures/fake_tensorrt) held against TensorRT's real Python
bindings: the binding wheels install without the libraries, and their extension module's strings
name every class, method and enum member. A fake must expose nothing its real release lacks, and
what the worker uses without a hasattr/getattr guard must exist in every release it claims.

Real wheels (make test-deps downloads them): tensorrt-bindings 8.6.1, tensorrt-cu12-bindings 10.3.0
and 11.4.0.106. TensorRT 8.2 has no wheel: its fake is held against 8.6.1, a superset of 8.2's
Python API (TENSORRT_FACTS: nothing the worker uses was removed between 8.2 and 8.6).

The strings of a shared object are tail-merged (INT8 is stored inside UINT8), so a name counts as
present when some string ends with it: the check proves absence, not presence."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from functools import lru_cache

import pytest
from conftest import FIXTURES, ROOT, require

WHEELS = ROOT / ".venv" / "tools" / "trt-bindings"
RELEASES = {"8.6": "tensorrt_bindings-8.6.1-", "10.3": "tensorrt_cu12_bindings-10.3.0-",
            "11.4": "tensorrt_cu12_bindings-11.4.0.106-"}
FAKES = {"trt82": "8.6", "trt86": "8.6", "trt10": "10.3", "trt11": "11.4"}
FAKE_HELPERS = {"install"}          # the fakes' own set-up function, not TensorRT API
DUMP = """
import inspect, json
import tensorrt as t
out = {}
for name in dir(t):
    obj = getattr(t, name)
    if name.startswith("_") or inspect.ismodule(obj):
        continue
    out[name] = [m for m in dir(obj) if not m.startswith("_") and not any(
        m in vars(b) for b in obj.__mro__ if b.__module__ == "builtins")] if inspect.isclass(obj) else []
print(json.dumps(out))
"""


@lru_cache(maxsize=None)
def real_strings(release: str) -> frozenset[str]:
    found = sorted(WHEELS.glob(RELEASES[release] + "*.whl")) if WHEELS.is_dir() else []
    require(bool(found), f"TensorRT {release} binding wheel", "make test-deps (pip download into .venv/tools)")
    with zipfile.ZipFile(found[0]) as wheel:
        [name] = [n for n in wheel.namelist() if n.endswith("tensorrt.so")]
        data = wheel.read(name)
    return frozenset(m.decode() for m in re.findall(rb"([A-Za-z_][A-Za-z0-9_]*)\x00", data))


def present(strings: frozenset[str], name: str) -> bool:
    return name in strings or any(s.endswith(name) for s in strings)


def fake_api(generation: str) -> dict[str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", DUMP], capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(FIXTURES / "fake_tensorrt" / generation)})
    return json.loads(proc.stdout)


@pytest.mark.parametrize("generation", sorted(FAKES))
def test_a_fake_exposes_nothing_its_real_release_lacks(generation):
    strings = real_strings(FAKES[generation])
    api = fake_api(generation)
    missing = [name for name in api if name not in FAKE_HELPERS and not present(strings, name)]
    missing += [f"{cls}.{member}" for cls, members in api.items() for member in members
                if not present(strings, member)]
    assert missing == [], f"the {generation} fake has what TensorRT {FAKES[generation]} does not"


def test_the_check_finds_what_a_release_lacks():
    """Measured on the real wheels (2026-12-02): 8.6.1 has no BF16 or INT64 data type, 11.4 has no
    OBEY_PRECISION_CONSTRAINTS builder flag, and no release has a name nobody wrote."""
    assert not present(real_strings("8.6"), "BF16") and present(real_strings("10.3"), "BF16")
    assert not present(real_strings("8.6"), "INT64") and present(real_strings("10.3"), "INT64")
    assert present(real_strings("10.3"), "OBEY_PRECISION_CONSTRAINTS")
    assert not present(real_strings("11.4"), "OBEY_PRECISION_CONSTRAINTS")
    assert not present(real_strings("11.4"), "set_zebra_crossing_mode")


WORKER = [ROOT / "fleetbuild" / "remote" / "backends" / name for name in ("engine.py", "layers.py", "tensorrt.py")]
WORKER.append(ROOT / "fleetbuild" / "remote" / "calibrator.py")
OBJECTS = r"(?:trt|builder|config|network|parser|profile|registry|runtime)"


def worker_uses() -> dict[str, set[str]]:
    """TensorRT names the worker reaches for, and the names it only reaches for behind a guard
    (hasattr/getattr with a literal name)."""
    used, guarded = set(), set()
    for path in WORKER:
        text = path.read_text()
        used |= {m for m in re.findall(rf"\b{OBJECTS}\.([A-Za-z_][A-Za-z0-9_]*)", text) if not m.startswith("_")}
        used |= set(re.findall(r"\btrt\.[A-Za-z_]+\.([A-Z][A-Z0-9_]+)\b", text))
        guarded |= set(re.findall(r"(?:hasattr|getattr)\([^,()]+,\s*\"([A-Za-z_][A-Za-z0-9_]*)\"", text))
        guarded |= set(re.findall(r"set_flag\(config,\s*\"([A-Z0-9_]+)\"", text))   # set_flag checks hasattr
        guarded |= _fallbacks(text)
    return {"used": used, "guarded": guarded}


def _fallbacks(text: str) -> set[str]:
    """Names used only in the else branch of an `if hasattr(...)`: the older API where the newer is missing."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.If) and any(isinstance(c, ast.Call) and getattr(c.func, "id", "") == "hasattr"
                                            for c in ast.walk(node.test)):
            for branch in node.orelse:
                found |= {a.attr for a in ast.walk(branch) if isinstance(a, ast.Attribute)}
    return found


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_what_the_worker_uses_unguarded_exists_in_every_release(release):
    strings = real_strings(release)
    uses = worker_uses()
    python_side = {"append", "get", "items", "lines", "name"}      # the worker's own objects share the names
    missing = sorted(n for n in uses["used"] - uses["guarded"] - python_side if not present(strings, n))
    assert missing == [], f"TensorRT {release} has no {missing}: guard them (hasattr) or drop the release"
