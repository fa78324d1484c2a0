"""What is installed in a device's engine directory, atomically, with the previous engine kept
(Python 3.6, standard library).

Plain layout: OUT/<model>.plan and OUT/<model>.manifest.json (the manifest with the release it
came from), and the one before them as OUT/<model>.previous.plan / .previous.manifest.json.
`install` never leaves OUT/<model>.plan missing or half-written: the old engine is hard-linked to
the previous name first, then the new one replaces it with one rename.
"""
import os

from .fsutil import read_json, write_json_atomic

SUFFIXES = (".plan", ".manifest.json")


class InstallError(Exception):
    pass


def paths(out_dir, model, previous=False):
    stem = os.path.join(out_dir, model + (".previous" if previous else ""))
    return stem + ".plan", stem + ".manifest.json"


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
    """Swap the installed and the previous engine; returns the manifest now installed."""
    plan, meta = paths(out_dir, model)
    old_plan, old_meta = paths(out_dir, model, previous=True)
    if not os.path.exists(old_plan):
        raise InstallError("no previous engine of {} in {} to roll back to".format(model, out_dir))
    for live, kept in ((plan, old_plan), (meta, old_meta)):
        swap = live + ".swap-{}".format(os.getpid())
        if os.path.exists(live):
            os.link(live, swap)
        os.replace(kept, live)
        if os.path.exists(swap):
            os.replace(swap, kept)
    return read_json(meta)


def entries(out_dir):
    """(model, manifest, path of the previous engine's manifest or None) for each plain engine in
    out_dir."""
    found = []
    if not os.path.isdir(out_dir):
        return found
    for name in sorted(os.listdir(out_dir)):
        if not name.endswith(".manifest.json") or name.endswith(".previous.manifest.json"):
            continue
        model = name[:-len(".manifest.json")]
        found.append((model, current(out_dir, model) or {}, paths(out_dir, model, previous=True)[1]))
    return found
