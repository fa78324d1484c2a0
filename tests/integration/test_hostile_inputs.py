"""Hostile and careless input, grouped by where it lands: the device (the zipapp runs as root there:
every argument and file is hostile), the store (gc, export, the hash cache, store URLs), secrets,
interrupts, and messages. Every case checks the outcome and that no traceback reached the user;
device cases also check that nothing outside --out changed."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, as_at_a_terminal, pyenv_python, require

from fleetbuild.plugin.manager import Plugins
from fleetbuild.store import signing
from fleetbuild.store.publish import publish, set_channel

PASSWORD = "hunter2-test-password"        # tests/conftest.py fails any run that prints it
T4 = {"gpus": [{"name": "Tesla T4", "compute_capability": "7.5"}],
      "tensorrt": [{"flavor": "tensorrt", "version": "10.3.0.26"}], "jetson": None}


# ---- a signed release in a file store, shared by the module ------------------------------------

def make_release(root: Path, key, models=("det", "seg"), version="1.0") -> dict:
    store = Plugins(entry_points=False).store_for(f"file://{root}/store", {}, root, "f", {})
    entries = {}
    for model in models:
        job_id = f"{model}/t4/fp16"
        engine = b"ftrt" + job_id.encode() + b"\0" * 64
        digest = hashlib.sha256(engine).hexdigest()
        store.write_bytes(f"blobs/sha256/{digest}", engine)
        manifest = {"build_key": digest, "job_id": job_id, "engine": {"sha256": digest, "size": len(engine)},
                    "io": {"inputs": [{"name": "x", "dtype": "float32", "shape": [1, 4]}],
                           "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 4]}]}}
        store.write_bytes(f"builds/{digest}.json", json.dumps(manifest).encode())
        entries[job_id] = {"target": "t4", "variant": "", "precision": "fp16", "compute_capability": "7.5",
                           "tensorrt": {"flavor": "tensorrt", "version": "10.3.0.26"}, "build_key": digest,
                           "manifest": f"builds/{digest}.json",
                           "engine": {"file": "engine.plan", "sha256": digest, "size": len(engine)}}
    index = publish(store, "fleet", version, entries, key)
    set_channel(store, "fleet", "stable", index, key)
    return entries


@pytest.fixture(scope="module")
def device(tmp_path_factory, zipapp):
    """(zipapp, python 3.6, store, public key file, facts file, base dir) for device cases."""
    py36 = pyenv_python("3.6")
    require(py36 is not None, "Python 3.6 (pyenv)", "the machine image's pyenv")
    base = tmp_path_factory.mktemp("hostile-device")
    _, public, key = signing.generate(base / "keys", {})
    make_release(base, key)
    facts = base / "t4.json"
    facts.write_text(json.dumps(T4))
    return {"zipapp": zipapp, "python": py36, "store": base / "store", "public": public, "facts": facts,
            "base": base}


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` (symlinks as their target text): to see that nothing else changed."""
    found = {}
    for item in sorted(path.rglob("*")):
        if item.is_symlink():
            found[str(item)] = b"-> " + os.readlink(item).encode()
        elif item.is_file():
            found[str(item)] = item.read_bytes()
    return found


def remote(device, *argv, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([device["python"], str(device["zipapp"]), *map(str, argv)], capture_output=True,
                          text=True, cwd=cwd, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    return proc


def pull_args(device, out, **changes):
    args = {"--store": device["store"], "--project": "fleet", "--version": "1.0", "--model": "det",
            "--public-key": device["public"], "--out": out, "--facts": device["facts"]}
    args.update(changes)
    argv = ["pull"]
    for option, value in args.items():
        if value is not None:
            argv += [option, value]
    return argv


BAD_NAMES = ["../victim", "..", "../../etc/passwd", "/etc/passwd", "a/b", "", ".hidden", "x" * 65, "a\nb",
             "-rf", "a b", "..\\x", "det/../../x", "~root"]


# ---- device: names and paths ---------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--project", "--model", "--channel", "--version"])
@pytest.mark.parametrize("value", BAD_NAMES, ids=lambda v: repr(v)[:20])
def test_device_pull_refuses_a_name_that_is_not_one(device, tmp_path, option, value):
    out = tmp_path / "box" / "out"
    out.mkdir(parents=True)
    (tmp_path / "box" / "victim.plan").write_bytes(b"victim")
    before = tree(tmp_path)
    changes = {option: value}
    if option == "--channel":
        changes["--version"] = None
    proc = remote(device, *pull_args(device, out, **changes))
    assert proc.returncode == 2, proc.stderr
    said = "expected one argument" if value.startswith("-") else "is not a valid"     # argparse: an option
    assert said in proc.stderr and option in proc.stderr, proc.stderr
    assert tree(tmp_path) == before


@pytest.mark.parametrize("value", BAD_NAMES, ids=lambda v: repr(v)[:20])
def test_device_rollback_refuses_a_name_that_is_not_one(device, tmp_path, value):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "victim.plan").write_bytes(b"victim")
    (tmp_path / "victim.previous.plan").write_bytes(b"previous victim")
    before = tree(tmp_path)
    proc = remote(device, "rollback", "--model", value, "--out", out)
    said = "expected one argument" if value.startswith("-") else "is not a valid name"
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert tree(tmp_path) == before


def installed_det(device, out: Path, times: int = 2) -> None:
    """det installed twice (so there is a previous engine): the second from a republished index."""
    for _ in range(times):
        proc = remote(device, *pull_args(device, out))
        assert proc.returncode == 0, proc.stderr
        (out / "det.plan").rename(out / "det.plan.tmp")     # make the next pull install again
        (out / "det.plan.tmp").rename(out / "det.previous.plan") if not (out / "det.previous.plan").exists() \
            else (out / "det.plan.tmp").unlink()
        (out / "det.manifest.json").rename(out / "det.previous.manifest.json") \
            if not (out / "det.previous.manifest.json").exists() else None
    remote(device, *pull_args(device, out))


@pytest.mark.parametrize("damage", ["no-manifest", "garbage-manifest", "list-manifest", "empty-manifest"])
def test_device_rollback_is_all_or_nothing(device, tmp_path, damage):
    out = tmp_path / "out"
    assert remote(device, *pull_args(device, out)).returncode == 0
    (out / "det.previous.plan").write_bytes(b"ftrt the engine before")
    previous_manifest = out / "det.previous.manifest.json"
    if damage != "no-manifest":
        previous_manifest.write_text({"garbage-manifest": "{not json", "list-manifest": "[]",
                                      "empty-manifest": ""}[damage])
    before = tree(tmp_path)
    proc = remote(device, "rollback", "--model", "det", "--out", out)
    assert proc.returncode == 1 and "nothing changed" in proc.stderr and "det" in proc.stderr, proc.stderr
    assert tree(tmp_path) == before                       # no swap file left, nothing moved


def test_device_rollback_swaps_engine_and_manifest_together(device, tmp_path):
    out = tmp_path / "out"
    assert remote(device, *pull_args(device, out)).returncode == 0
    installed = (out / "det.plan").read_bytes(), (out / "det.manifest.json").read_bytes()
    (out / "det.previous.plan").write_bytes(b"ftrt older")
    (out / "det.previous.manifest.json").write_text(json.dumps({"release": {"version": "0.9", "job_id": "det/x"}}))
    proc = remote(device, "rollback", "--model", "det", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "det.plan").read_bytes() == b"ftrt older"
    assert json.loads((out / "det.manifest.json").read_text())["release"]["version"] == "0.9"
    assert ((out / "det.previous.plan").read_bytes(), (out / "det.previous.manifest.json").read_bytes()) == installed
    assert sorted(p.name for p in out.iterdir() if ".swap-" in p.name) == []


@pytest.mark.parametrize("link", ["previous-plan", "plan", "previous-manifest"])
def test_device_never_follows_a_planted_symlink_out_of_out(device, tmp_path, link):
    out = tmp_path / "out"
    assert remote(device, *pull_args(device, out)).returncode == 0
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not yours")
    name = {"previous-plan": "det.previous.plan", "plan": "det.plan",
            "previous-manifest": "det.previous.manifest.json"}[link]
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(outside)
    if link != "previous-plan":
        (out / "det.previous.plan").write_bytes(b"ftrt older")
    if link != "previous-manifest":
        (out / "det.previous.manifest.json").write_text("{}")
    proc = remote(device, "rollback", "--model", "det", "--out", out)
    assert proc.returncode == 1 and "outside" in proc.stderr, proc.stderr
    assert outside.read_bytes() == b"not yours" and (out / name).is_symlink()


@pytest.mark.parametrize("out_kind", ["missing", "file"])
@pytest.mark.parametrize("command", ["installed", "rollback"])
def test_device_commands_on_an_out_that_is_not_a_directory(device, tmp_path, out_kind, command):
    out = tmp_path / "out"
    if out_kind == "file":
        out.write_text("a file")
    argv = ["installed", "--out", out] if command == "installed" else ["rollback", "--model", "det", "--out", out]
    proc = remote(device, *argv)
    assert proc.returncode == 1 and str(out) in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_device_pull_into_an_out_that_is_a_file(device, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    proc = remote(device, *pull_args(device, out))
    assert proc.returncode == 1 and "--out" in proc.stderr and "is a file" in proc.stderr, proc.stderr
    assert out.read_text() == "a file"


@pytest.mark.parametrize("content", ["{not json", "[]", "", "null", '"text"'])
def test_device_installed_reports_a_manifest_it_cannot_read(device, tmp_path, content):
    out = tmp_path / "out"
    assert remote(device, *pull_args(device, out)).returncode == 0
    (out / "seg.manifest.json").write_text(content)
    proc = remote(device, "installed", "--out", out)
    assert proc.returncode == 1 and "seg.manifest.json" in proc.stderr, proc.stderr
    rows = {r["model"]: r for r in json.loads(proc.stdout)}
    assert rows["det"]["version"] == "1.0" and "error" not in rows["det"]
    assert set(rows["seg"]) == {"model", "layout", "error"}


@pytest.mark.parametrize("engine", ["truncated", "not-an-engine", "empty", "missing", "directory"])
def test_device_header_of_a_bad_engine_fails(device, tmp_path, engine):
    path = tmp_path / "engine.plan"
    if engine == "truncated":
        full = bytearray(b"vtrt" + b"\0" * 12 + (100_000).to_bytes(8, "little") + bytes([1, 7, 1, 116]) + b"\0" * 64)
        path.write_bytes(bytes(full))
    elif engine == "not-an-engine":
        path.write_bytes(b"PK\x03\x04 a zip file, say")
    elif engine == "empty":
        path.write_bytes(b"")
    elif engine == "directory":
        path.mkdir()
    proc = remote(device, "header", path)
    assert proc.returncode == 1 and str(path) in proc.stderr, proc.stderr


# ---- device: facts, keys and other files --------------------------------------------------------

BAD_FACTS = {
    "gpus-a-string": {"gpus": "Tesla T4", "tensorrt": []},
    "a-list": [],
    "empty-object": {},
    "cc-banana": {"gpus": [{"name": "T4", "compute_capability": "banana"}], "tensorrt": []},
    "cc-number": {"gpus": [{"name": "T4", "compute_capability": 7.5}], "tensorrt": []},
    "gpu-a-string": {"gpus": ["Tesla T4"], "tensorrt": []},
    "no-tensorrt": {"gpus": []},
    "tensorrt-an-object": {"gpus": [], "tensorrt": {"flavor": "tensorrt"}},
    "flavor-unknown": {"gpus": [], "tensorrt": [{"flavor": "openvino", "version": "1.0"}]},
    "version-a-number": {"gpus": [], "tensorrt": [{"flavor": "tensorrt", "version": 10}]},
    "jetson-a-string": {"gpus": [], "tensorrt": [], "jetson": "yes"},
    "null": None,
}


@pytest.mark.parametrize("name", sorted(BAD_FACTS))
def test_device_pull_refuses_facts_of_the_wrong_shape(device, tmp_path, name):
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(BAD_FACTS[name]))
    proc = remote(device, *pull_args(device, tmp_path / "out", **{"--facts": facts}))
    assert proc.returncode == 1 and f"--facts {facts}" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(BAD_FACTS))
def test_controller_pull_refuses_facts_of_the_wrong_shape(device, cli, project, tmp_path, name):
    project.write(FLEET.format(store=device["store"]))
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(BAD_FACTS[name]))
    result = cli("pull", "--model", "det", "--version", "1.0", "--out", "out", "--public-key", str(device["public"]),
                 "--facts", str(facts), "--dry-run")
    assert result.code == 2 and f"--facts {facts}" in result.err, result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("case", ["facts-missing", "facts-not-json", "facts-empty", "key-missing", "key-a-directory",
                                  "urls-not-json", "urls-a-list"])
def test_device_pull_names_the_file_it_cannot_use(device, tmp_path, case):
    option = {"facts": "--facts", "key": "--public-key", "urls": "--urls"}[case.split("-")[0]]
    path = tmp_path / "given.json"
    if case.endswith("not-json"):
        path.write_text("{'single': quotes}")
    elif case == "facts-empty":
        path.write_text("")
    elif case == "key-a-directory":
        path.mkdir()
    elif case == "urls-a-list":
        path.write_text("[]")
    proc = remote(device, *pull_args(device, tmp_path / "out", **{option: path}))
    assert proc.returncode == 1 and f"{option} {path}" in proc.stderr, proc.stderr


def test_device_pull_restarts_a_damaged_part_file_instead_of_blaming_the_store(device, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".det.plan.download.part").write_bytes(b"garbage left by a crash")
    proc = remote(device, *pull_args(device, out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "det.plan").read_bytes().startswith(b"ftrtdet/t4/fp16")
    assert not (out / ".det.plan.download.part").exists()


@pytest.mark.parametrize("store", ["http://fleet:{pw}@127.0.0.1:9/store", "https://{pw}@127.0.0.1:9/store",
                                   "http://127.0.0.1:9/store?X-Amz-Signature={pw}"])
def test_device_pull_never_prints_a_password_from_the_store_url(device, tmp_path, store):
    proc = remote(device, *pull_args(device, tmp_path / "out", **{"--store": store.format(pw=PASSWORD)}))
    assert proc.returncode == 1 and "127.0.0.1:9" in proc.stderr, proc.stderr


FLEET = """
[project]
name = "fleet"
[models.det]
onnx = "models/conv_bn_relu.onnx"
[matrix]
targets = ["t4"]
[store]
url = "file://{store}"
"""


# ---- store: gc ------------------------------------------------------------------------------------

@pytest.fixture
def store_project(project, tmp_path):
    """fleet.toml for project 'fleet' over a file store holding release 1.0 (det, seg), signed."""
    _, public, key = signing.generate(tmp_path / "keys", {})
    entries = make_release(tmp_path, key)
    project.write(FLEET.format(store="./store"))
    old = time.time() - 3 * 86400                                 # past any grace period
    for blob in (tmp_path / "store" / "blobs" / "sha256").iterdir():
        os.utime(blob, (old, old))
    return {"entries": entries, "public": public, "key": key, "store": tmp_path / "store"}


@pytest.mark.parametrize("damage", ["manifest-missing", "manifest-garbage", "manifest-a-list", "manifest-empty"])
def test_gc_keeps_the_engines_a_release_names_whatever_the_manifests_say(cli, store_project, damage):
    entry = store_project["entries"]["det/t4/fp16"]
    manifest = store_project["store"] / entry["manifest"]
    if damage == "manifest-missing":
        manifest.unlink()
    else:
        manifest.write_text({"manifest-garbage": "{{{", "manifest-a-list": "[]", "manifest-empty": ""}[damage])
    result = cli("artifacts", "gc")
    assert result.code == 0, result.err
    assert (store_project["store"] / "blobs" / "sha256" / entry["engine"]["sha256"]).exists()
    assert "0 unreferenced engines deleted" in result.out


@pytest.mark.parametrize("damage", ["index-garbage", "index-empty", "index-a-list", "index-no-entries"])
def test_gc_refuses_when_a_kept_release_cannot_be_read(cli, store_project, damage):
    index = store_project["store"] / "releases" / "fleet" / "1.0" / "index.json"
    index.write_text({"index-garbage": "{oops", "index-empty": "", "index-a-list": "[1]",
                      "index-no-entries": '{"project": "fleet"}'}[damage])
    before = tree(store_project["store"])
    result = cli("artifacts", "gc")
    assert result.code == 4 and "releases/fleet/1.0/index.json" in result.err and "deleted nothing" in result.err
    assert tree(store_project["store"]) == before


@pytest.mark.parametrize("content", ["", "garbage", "[]", "null"])
def test_gc_keep_releases_refuses_a_channel_it_cannot_read(cli, store_project, content):
    (store_project["store"] / "releases" / "fleet" / "channels" / "stable.json").write_text(content)
    before = tree(store_project["store"])
    result = cli("artifacts", "gc", "--keep-releases", "1")
    assert result.code == 4 and "channels/stable.json" in result.err, result.err
    assert tree(store_project["store"]) == before


@pytest.mark.parametrize("hours", ["-5", "nan", "inf", "-inf", "abc", ""])
def test_gc_grace_hours_must_be_finite_hours(cli, store_project, hours):
    before = tree(store_project["store"])
    result = cli("artifacts", "gc", "--grace-hours", hours)
    assert result.code == 2 and "--grace-hours" in result.err, result.err
    assert tree(store_project["store"]) == before


def test_gc_still_deletes_what_nothing_names(cli, store_project):
    orphan = store_project["store"] / "blobs" / "sha256" / ("0" * 64)
    orphan.write_bytes(b"nobody's")
    old = time.time() - 3 * 86400
    os.utime(orphan, (old, old))
    result = cli("artifacts", "gc")
    assert result.code == 0 and not orphan.exists() and "1 unreferenced engines deleted" in result.out


# ---- store: export --------------------------------------------------------------------------------

def test_export_refuses_an_edited_index_and_writes_nothing(cli, store_project, tmp_path):
    index_path = store_project["store"] / "releases" / "fleet" / "1.0" / "index.json"
    index = json.loads(index_path.read_text())
    index["expires"] = index["expires"] + 10 ** 8            # someone extends the release by hand
    index_path.write_text(json.dumps(index))
    result = cli("artifacts", "export", "1.0", "--out", "repo", "--public-key", str(store_project["public"]))
    assert result.code == 4 and "not exported" in result.err, result.err
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_export_with_one_corrupt_engine_leaves_the_repository_as_it_was(cli, store_project, tmp_path):
    repo = tmp_path / "repo"
    (repo / "det" / "1").mkdir(parents=True)
    (repo / "det" / "config.pbtxt").write_text("# served now\n")
    before = tree(repo)
    seg = store_project["entries"]["seg/t4/fp16"]["engine"]["sha256"]
    (store_project["store"] / "blobs" / "sha256" / seg).write_bytes(b"ftrt rotten")
    result = cli("artifacts", "export", "1.0", "--out", "repo", "--public-key", str(store_project["public"]))
    assert result.code == 4 and "seg/t4/fp16" in result.err and "corrupted" in result.err, result.err
    assert tree(repo) == before
    assert [p.name for p in tmp_path.iterdir() if ".export-" in p.name] == []


@pytest.mark.parametrize("key", ["none", "other"])
def test_export_needs_the_fleet_key(cli, store_project, tmp_path, key):
    argv = ["artifacts", "export", "1.0", "--out", "repo"]
    if key == "other":
        _, other, _ = signing.generate(tmp_path / "other-keys", {})
        argv += ["--public-key", str(other)]
    result = cli(*argv)
    assert result.code == (2 if key == "none" else 4), result.err
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_export_of_a_good_release_replaces_the_models(cli, store_project, tmp_path):
    (tmp_path / "repo" / "det").mkdir(parents=True)
    (tmp_path / "repo" / "det" / "stale.txt").write_text("from before")
    result = cli("artifacts", "export", "1.0", "--out", "repo", "--public-key", str(store_project["public"]))
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["det", "seg"]
    assert sorted(p.name for p in (tmp_path / "repo" / "det").iterdir()) == ["1", "config.pbtxt"]


# ---- store: URLs and the hash cache ---------------------------------------------------------------

@pytest.mark.parametrize("url", ["file://./fleet.toml", "file://./models/conv_bn_relu.onnx"])
def test_a_store_url_that_names_a_file(cli, project, minimal, url):
    project.write(minimal + f'\n[store]\nurl = "{url}"\n')
    result = cli("artifacts", "list")
    assert result.code == 3 and "store.url" in result.err and "not a store directory" in result.err


@pytest.mark.parametrize("url", [f"s3://AKIAABCDEFGHIJKLMNOP:{PASSWORD}@bucket/prefix", f"s3://{PASSWORD}@bucket"])
def test_an_s3_url_with_credentials_is_refused_without_printing_them(cli, project, minimal, url):
    pytest.importorskip("boto3")
    project.write(minimal + f'\n[store]\nurl = "{url}"\n')
    result = cli("artifacts", "list", "-p", "fleetbuild_plugins.s3")
    assert result.code == 3 and "carries credentials" in result.err, result.err


def test_the_hash_cache_is_not_fooled_by_a_restored_mtime(tmp_path):
    from fleetbuild.filehash import FileHasher

    path = tmp_path / "engine.plan"
    path.write_bytes(b"A" * 4096)
    hasher = FileHasher(tmp_path / "cache")
    first = hasher.sha256(path)
    stat = path.stat()
    time.sleep(0.01)
    with open(path, "r+b") as handle:                 # one byte flipped, size kept
        handle.seek(100)
        handle.write(b"B")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))    # mtime restored, as `touch -d` would
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert FileHasher(tmp_path / "cache").sha256(path) != first == hashlib.sha256(b"A" * 4096).hexdigest()


# ---- interrupts -----------------------------------------------------------------------------------

START = ("import sys; sys.argv = ['fleetbuild', 'targets']; print('go', flush=True); "
         "from fleetbuild.entry import run; run()")


@pytest.mark.parametrize("delay", [0.005 + 0.025 * i for i in range(20)], ids=lambda d: f"{d:.3f}s")
def test_a_ctrl_c_anywhere_in_start_up_is_a_clean_interrupt(tmp_path, delay):
    """SIGINT (to the process group, as a terminal sends it) at 20 points while fleetbuild imports
    (dataclasses, rich, onnx) and runs: exit 130 with one line, or the command's own exit when it
    finished first; never a traceback, never death by the signal. The clock starts once the
    interpreter is up (its own start-up is Python's, not fleetbuild's)."""
    env = {**os.environ, "FLEETBUILD_CACHE_DIR": str(tmp_path / "cache"), "FLEETBUILD_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen([sys.executable, "-c", START], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=as_at_a_terminal)
    assert proc.stdout.readline() == "go\n"
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, 0), (proc.returncode, err)
    assert "Traceback" not in err, err
    if proc.returncode == 130:
        assert err.strip().endswith("fleetbuild: interrupted"), err


def test_an_interrupt_wrapped_by_set_name_is_an_interrupt():
    from fleetbuild.errors import is_interrupt

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RuntimeError("Error calling __set_name__ on '_FieldDescriptor'") from inner
    except RuntimeError as wrapped:
        assert is_interrupt(wrapped)
    assert not is_interrupt(RuntimeError("a real bug"))


# ---- messages -------------------------------------------------------------------------------------

@pytest.mark.parametrize("tables,expected", [
    ('[targets.aa]\nextends = "bb"\n[targets.bb]\nextends = "aa"\n', "aa → bb → aa"),
    ('[targets.aa]\nextends = "bb"\n[targets.bb]\nextends = "cc"\n[targets.cc]\nextends = "aa"\n', "aa → bb → cc → aa"),
    ('[targets.aa]\nextends = "aa"\n', "extends itself"),
])
def test_targets_that_extend_each_other_name_the_circle(cli, project, minimal, tables, expected):
    project.write(minimal + tables)
    result = cli("matrix", "plan")
    assert result.code == 3 and expected in result.err and "fleet.toml" in result.err, result.err


def test_a_target_may_extend_one_written_below_it(cli, project, minimal):
    project.write(minimal.replace('targets = ["t4"]', 'targets = ["aa"]') +
                  '[targets.aa]\nextends = "bb"\n[targets.bb]\nextends = "t4"\n')
    result = cli("matrix", "plan")
    assert result.code == 0, result.err


@pytest.mark.parametrize("kind", ["loop", "self"])
def test_a_symlink_loop_as_the_model_path(cli, project, minimal, kind):
    models = project.root / "models"
    if kind == "loop":
        (models / "a.onnx").symlink_to("b.onnx")
        (models / "b.onnx").symlink_to("a.onnx")
    else:
        (models / "a.onnx").symlink_to("a.onnx")
    project.write(minimal.replace("models/conv_bn_relu.onnx", "models/a.onnx"))
    result = cli("matrix", "plan")
    assert result.code == 3 and "models.conv.onnx" in result.err and "symlink" in result.err.lower(), result.err


@pytest.mark.parametrize("workspace", ['"999999999TiB"', '"2TiB"', str(2 ** 70)])
def test_a_workspace_no_gpu_has_is_a_plan_error(cli, project, minimal, workspace):
    project.write(minimal.replace("[matrix]", f"[defaults]\nworkspace = {workspace}\n\n[matrix]"))
    result = cli("matrix", "plan", "--json")
    assert result.code == 1, result.err
    [job] = json.loads(result.out)["jobs"]
    assert [p["code"] for p in job["problems"]] == ["workspace-too-large"]


@pytest.mark.parametrize("key,meant", [("precision", "precisions"), ("targts", "targets"), ("onx", "onnx")])
def test_a_misspelt_key_says_what_it_likely_means(cli, project, minimal, key, meant):
    text = {"precision": minimal.replace("[matrix]", '[defaults]\nprecision = ["fp16"]\n\n[matrix]'),
            "targts": minimal.replace("targets = ", "targts = "),
            "onnx": minimal.replace('onnx = "models', 'onx = "models')}[key if key != "onx" else "onnx"]
    project.write(text)
    result = cli("matrix", "plan")
    assert result.code == 3 and f"'{meant}'" in result.err and key in result.err, result.err


def test_the_redaction_leaves_ordinary_text_alone():
    from fleetbuild.remote.redact import redact

    for text in ("ssh root@127.0.0.1 -p 22", "mail ops@example.com", "file:///tmp/a@b", "x=1&y=2",
                 "releases/fleet/1.0/index.json"):
        assert redact(text) == text
    assert redact(f"http://u:{PASSWORD}@h/x") == "http://u:***@h/x"
    assert str(ROOT) in redact(str(ROOT))


@pytest.mark.parametrize("groups,guess", [("[t4x]\n", "did you mean 't4x'?"), ("[gpu]\n", ""), ("", "")])
def test_an_inventory_without_the_target_group_says_what_it_has(cli, project, minimal, groups, guess):
    project.write(minimal)
    inventory = project.root / "hosts.ini"
    inventory.write_text(groups + ("localhost ansible_connection=local\n" if groups else ""))
    result = cli("matrix", "build", "-i", str(inventory), "--json", "-")
    assert result.code == 1, result.err
    [row] = json.loads(result.out)["results"]
    assert row["reason"].startswith(f"no hosts in inventory group 't4' of {inventory} (its groups: "), row
    assert guess in row["reason"]
