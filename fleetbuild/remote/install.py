"""What is installed in a device's engine directory, atomically, with the previous engine kept
(Python 3.6, standard library).

Plain layout: OUT/<model>.plan and OUT/<model>.manifest.json (the manifest with the release it
came from), and the one before them as OUT/<model>.previous.plan / .previous.manifest.json.
`install` never leaves OUT/<model>.plan missing or half-written: the old engine is hard-linked to
the previous name first, then the new one replaces it with one rename.
"""
import os

from .fsutil import read_json, write_json_atomic
from .names import check_name, inside

SUFFIXES = (".plan", ".manifest.json")


class InstallError(Exception):
    pass


def paths(out_dir, model, previous=False):
    """(engine, manifest) of `model` in out_dir; BadName for a model name that is not one, or a
    path that resolves outside out_dir (a symlink planted there)."""
    stem = os.path.join(out_dir, check_name("model", model) + (".previous" if previous else ""))
    return inside(out_dir, stem + ".plan"), inside(out_dir, stem + ".manifest.json")


def current(out_dir, model):
    """The installed manifest of `model`, or None."""
    try:
        return read_json(paths(out_dir, model)[1])
    except (IOError, OSError, ValueError):
        return None


def install(out_dir, model, engine_file, manifest):
    """Make `engine_file` (already verified, inside out_dir) the installed engine of `model`; the
    engine it replaces becomes the previous one."""
    plan, meta = paths(out_dir, model)
    old_plan, old_meta = paths(out_dir, model, previous=True)
    if os.path.exists(plan):
        for source, dest in ((plan, old_plan), (meta, old_meta)):
            if os.path.exists(source):
                tmp = dest + ".tmp-{}".format(os.getpid())
                if os.path.exists(tmp):
                    os.unlink(tmp)
                os.link(source, tmp)
                os.replace(tmp, dest)
    write_json_atomic(meta + ".new", manifest)
    os.replace(engine_file, plan)
    os.replace(meta + ".new", meta)


def rollback(out_dir, model):
    """Swap the installed and the previous engine with their manifests, all or nothing; returns the
    manifest now installed."""
    plan, meta = paths(out_dir, model)
    old_plan, old_meta = paths(out_dir, model, previous=True)
    if not os.path.exists(old_plan):
        raise InstallError("no previous engine of {} in {} to roll back to".format(model, out_dir))
    try:
        before = read_json(old_meta)
        if not isinstance(before, dict):
            raise ValueError("not a manifest (a JSON {})".format(type(before).__name__))
    except (IOError, OSError, ValueError) as err:
        raise InstallError("the previous engine of {} has no readable manifest ({}: {}): nothing changed".format(
            model, old_meta, getattr(err, "strerror", None) or err))
    done = []
    try:
        for live, kept in ((plan, old_plan), (meta, old_meta)):
            _swap(live, kept)
            done.append((live, kept))
    except (IOError, OSError) as err:
        for live, kept in reversed(done):
            _swap(live, kept)
        raise InstallError("rollback of {} failed ({}): nothing changed".format(model, err))
    return before


def _swap(live, kept):
    """`kept` becomes `live` and `live` (when there is one) becomes `kept`; no file is left behind."""
    swap = live + ".swap-{}".format(os.getpid())
    try:
        if os.path.exists(live):
            os.link(live, swap)
        os.replace(kept, live)
        if os.path.exists(swap):
            os.replace(swap, kept)
    finally:
        if os.path.exists(swap):
            os.unlink(swap)


def entries(out_dir):
    """(model, manifest or None, previous manifest path, error or None) for each plain engine in
    out_dir; a manifest that cannot be read is reported, never listed as empty."""
    found = []
    for name in sorted(os.listdir(out_dir)):
        if not name.endswith(".manifest.json") or name.endswith(".previous.manifest.json"):
            continue
        model = name[:-len(".manifest.json")]
        try:
            manifest, error = read_json(os.path.join(out_dir, name)), None
            if not isinstance(manifest, dict):
                manifest, error = None, "{}: not a manifest (a JSON {})".format(name, type(manifest).__name__)
        except (IOError, OSError, ValueError) as err:
            manifest, error = None, "{}: unreadable: {}".format(name, getattr(err, "strerror", None) or err)
        found.append((model, manifest, os.path.join(out_dir, model + ".previous.manifest.json"), error))
    return found
