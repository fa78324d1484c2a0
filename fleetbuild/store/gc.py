"""Garbage collection of a store: which releases, manifests and engine blobs may go.

What a kept release needs stays whatever the build manifests say: its index names its engines and
plugin libraries directly, and those are kept even when their builds/ manifest is missing or broken.
A kept release whose index cannot be read (or, with --keep-releases, a channel file that cannot be
read) stops gc before anything is deleted: gc cannot know what it would break.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from fleetbuild.errors import EnvironmentProblem
from fleetbuild.store.api import NotFound

INDEX = re.compile(r"^releases/([^/]+)/([^/]+)/index\.json$")
CHANNEL = re.compile(r"^releases/([^/]+)/channels/([^/]+)\.json$")


class GcRefused(EnvironmentProblem):
    """gc cannot tell what a release needs: nothing was deleted."""


@dataclass
class GcPlan:
    releases: list[str] = field(default_factory=list)         # release prefixes to remove (--keep-releases)
    manifests: list[str] = field(default_factory=list)        # builds/ manifests only those releases named
    blobs: list[str] = field(default_factory=list)            # unreferenced blobs older than the grace period
    kept_blobs: int = 0
    unreadable_manifests: list[str] = field(default_factory=list)


def grace_hours(text: str) -> float:
    """argparse type= for --grace-hours: a finite number of hours, 0 or more."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more hours (uploads younger than this are never "
                                         "deleted)")
    return value


def _json(store: Any, key: str, what: str) -> dict:
    try:
        document = json.loads(store.read_bytes(key)[0])
    except NotFound:
        raise GcRefused(f"{store.url}: {key} vanished while gc read the store; run gc again") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise GcRefused(f"{store.url}: {key}: {what} is not JSON ({err}): gc cannot tell what it needs, so it "
                        "deleted nothing; republish it (fleetbuild publish) or remove it") from None
    if not isinstance(document, dict):
        raise GcRefused(f"{store.url}: {key}: {what} is not a JSON object: gc deleted nothing; republish or remove it")
    return document


def _named_blobs(index: dict, key: str, store: Any) -> set[str]:
    try:
        entries = index["entries"].values()
        named = {e["engine"]["sha256"] for e in entries}
        named |= {p["sha256"] for e in entries for p in e.get("plugins") or [] if p.get("sha256")}
        named |= {a["sha256"] for e in entries for side in ("inputs", "outputs")
                  for a in ((e.get("golden") or {}).get(side) or {}).values()}     # the health gate's samples
    except (KeyError, TypeError, AttributeError):
        raise GcRefused(f"{store.url}: {key}: not a release index (no entries with engines): gc deleted nothing; "
                        "republish it or remove it") from None
    return named


def plan_gc(store: Any, grace_hours: float, keep_releases: int | None = None, now: float | None = None) -> GcPlan:
    """What gc would delete; reads the store, deletes nothing. GcRefused when a kept release (or a
    channel, with keep_releases) cannot be read."""
    indexes: dict[str, list[tuple[float, str, str, dict]]] = {}
    pinned: set[tuple[str, str]] = set()
    builds, blobs = [], []
    for key in store.list(""):
        if match := INDEX.match(key):
            index = _json(store, key, "the release index")
            indexes.setdefault(match.group(1), []).append((index.get("created") or 0, match.group(2), key, index))
        elif keep_releases is not None and (match := CHANNEL.match(key)):
            channel = _json(store, key, f"channel {match.group(2)}")
            pinned.add((match.group(1), str(channel.get("version"))))
        elif key.startswith("builds/") and key.endswith(".json"):
            builds.append(key)
        elif key.startswith("blobs/sha256/"):
            blobs.append(key)
    plan = GcPlan()
    kept_manifests, dropped_manifests, needed = set(), set(), set()
    for project, releases in indexes.items():
        releases.sort(key=lambda item: (item[0], item[1]), reverse=True)
        for position, (_, version, key, index) in enumerate(releases):
            named = _named_blobs(index, key, store)
            manifests = {e.get("manifest") for e in index["entries"].values()} - {None}
            if keep_releases is None or position < keep_releases or (project, version) in pinned:
                needed |= named
                kept_manifests |= manifests
            else:
                dropped_manifests |= manifests
                plan.releases.append(f"releases/{project}/{version}/")
    plan.manifests = sorted(dropped_manifests - kept_manifests)
    referenced = set(needed)
    for key in builds:
        if key in plan.manifests:
            continue
        try:
            manifest = json.loads(store.read_bytes(key)[0])
            referenced.add(manifest["engine"]["sha256"])
            referenced.update(p["sha256"] for p in manifest.get("plugins") or [] if p.get("sha256"))
        except NotFound:
            continue
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
            plan.unreadable_manifests.append(key)
    cutoff = (time.time() if now is None else now) - grace_hours * 3600
    plan.blobs = [key for key in blobs if key.rsplit("/", 1)[1] not in referenced and store.stat(key)[1] < cutoff]
    plan.kept_blobs = len(blobs) - len(plan.blobs)
    return plan


def run_gc(store: Any, plan: GcPlan) -> None:
    """Delete what `plan` names: releases first (each one's index before the rest, so no half-removed
    release is ever listed), then manifests, then blobs."""
    for prefix in plan.releases:
        keys = sorted(store.list(prefix), key=lambda k: not k.endswith("/index.json"))
        for key in keys:
            store.delete(key)
    for key in plan.manifests:
        for name in (key, key + ".minisig"):
            if store.exists(name):
                store.delete(name)
    for key in plan.blobs:
        store.delete(key)
