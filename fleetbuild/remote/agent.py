"""`fleetbuild-remote agent`: one cycle of a device that follows a channel's rollout by itself, for
a systemd timer or cron (Python 3.6, standard library).

A cycle: take the lock (two cycles never overlap), wait out a backoff after failures, sleep a random
jitter, then one conditional GET of the channel's rollout record (an unchanged fleet costs one small
request per device per cycle: 304, or an unchanged file). The record decides, with this device's
stable id, which version it should run (rollout.decide); when that is not what is installed, each
model is pulled as `pull` does (choice with reasons, streaming, resume, atomic install, previous
engine kept), then the health gate runs (health.py). A failed gate restores the previous engine at
once and remembers the release as bad for that model until the record's sequence changes. A channel
without a rollout record is followed as `pull --channel` does. Every cycle that changes or fails
something leaves a report signed by this device's own key (reports.py).
"""
import errno
import hashlib
import json
import os
import random
import time
import uuid

from .fsutil import read_json, write_json_atomic
from .health import remember, restore
from .install import current
from .pull import Missing, PullError, channel_version, pull
from .rollout import RolloutError, decide, open_record, record_key
from .transport import fetch_if_changed

STATE = ".fleetbuild-agent.json"
LOCK = ".fleetbuild-agent.lock"
DEVICE_ID = ".fleetbuild-device-id"
BACKOFF_FIRST, BACKOFF_MAX = 60.0, 6 * 3600.0


class AgentOptions(object):
    def __init__(self, store, project, channel, models, public_key_text, out, device_id=None, jitter=0.0,
                 precision=None, facts=None, urls=None, health=None, report=None, now=None):
        self.store, self.project, self.channel, self.models = store, project, channel, list(models)
        self.public_key_text, self.out, self.device_id, self.jitter = public_key_text, out, device_id, jitter
        self.precision, self.facts, self.urls, self.health, self.report = precision, facts, urls, health, report
        self.now = now or time.time


class Cycle(object):
    """What one cycle did: status (unchanged | changed | failed | busy | backing off), the lines to
    print, and the report it left (None when nothing changed)."""

    def __init__(self, status, lines, report=None):
        self.status, self.lines, self.report = status, lines, report
        self.backoff = False                # a transient failure: the next cycle waits


def device_id(out, given=None):
    """The stable id of this device: `given`, else the one kept under out (made at first run)."""
    if given:
        return given
    path = os.path.join(out, DEVICE_ID)
    try:
        with open(path) as handle:
            found = handle.read().strip()
        if found:
            return found
    except (IOError, OSError):
        pass
    made = uuid.uuid4().hex
    tmp = "{}.tmp-{}".format(path, os.getpid())
    with open(tmp, "w") as handle:
        handle.write(made + "\n")
    os.replace(tmp, path)
    return made


def run_cycle(opts, sleep=time.sleep):
    if not os.path.isdir(opts.out):
        os.makedirs(opts.out)
    lock = _lock(opts.out)
    if lock is None:
        return Cycle("busy", ["another agent cycle is running in {}: nothing done".format(opts.out)])
    try:
        state = _state(opts.out)
        now = opts.now()
        if now < state.get("next_try", 0):
            return Cycle("backing off", ["backing off after {} failed cycle(s) until {}".format(
                state.get("failures", 0), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state["next_try"])))])
        if opts.jitter:
            sleep(random.uniform(0, opts.jitter))
        started, me = opts.now(), None
        try:
            me = device_id(opts.out, opts.device_id)
            cycle = _cycle(opts, state, me, started)
            if cycle.backoff:
                cycle.lines.append("next try in {:.0f} s".format(_back_off(state, opts.now())))
            else:
                state["failures"], state["next_try"] = 0, 0
        except (PullError, RolloutError, ValueError, IOError, OSError) as err:
            wait = _back_off(state, opts.now())
            message = str(err) if not isinstance(err, (IOError, OSError)) or not err.strerror else \
                "{}: {}".format(err.filename or opts.store, err.strerror)
            cycle = Cycle("failed", ["cycle failed: {}; next try in {:.0f} s".format(message, wait)],
                          {"error": message, "changes": []})
        if cycle.report is not None and opts.report is not None and me is not None:
            cycle.report.update(device=me, project=opts.project,
                                channel=opts.channel, sequence=state.get("sequence"),
                                rollout=(state.get("record") or {}).get("salt"), time=round(opts.now(), 3),
                                duration_s=round(opts.now() - started, 3))
            sent = opts.report.send(cycle.report, opts.out)
            if sent:
                cycle.lines.append(sent)
        write_json_atomic(os.path.join(opts.out, STATE), state)
        return cycle
    finally:
        os.close(lock)


def _cycle(opts, state, me, now):
    record = _record(opts, state)
    if record is None:                                  # no rollout: the channel as `pull --channel`
        target, why = channel_version(opts.store, opts.project, opts.channel, opts.public_key_text, opts.urls), \
            "channel {} (no rollout)".format(opts.channel)
    changes, lines, failed, transient, facts = [], [], False, False, opts.facts
    for model in opts.models:
        installed = ((current(opts.out, model) or {}).get("release") or {}).get("version")
        if record is not None:
            target, why = decide(record, me, now, installed)
        if target is None or target == installed:
            continue
        bad = (state.get("bad") or {}).get(model)
        if bad and bad == [target, state.get("sequence")]:
            lines.append("{}: {} failed its health gate on this device before: not retried until the rollout "
                         "changes".format(model, target))
            continue
        change = {"model": model, "from": installed, "to": target, "why": why}
        try:
            if facts is None:                           # probed once a cycle, and only when something changes
                from .probe import Probe

                facts = Probe().collect()
            change["facts_digest"] = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]
            pulled = pull(opts.store, opts.project, target, model, opts.public_key_text, opts.out, opts.precision,
                          facts, urls=opts.urls, golden=opts.health is not None)
        except PullError as err:
            change.update(verdict="failed", error=str(err))
            changes.append(change)
            lines.append("{}: {} not installed: {}".format(model, target, err))
            if err.reasons:                             # no engine fits this device: not retried until it changes
                state.setdefault("bad", {})[model] = [target, state.get("sequence")]
            else:                                       # the store or the download: back off, then try again
                transient = True
            failed = True
            continue
        change["job_id"], change["engine"] = pulled.job_id, (pulled.entry or {}).get("engine", {}).get("sha256")
        if pulled.status != "installed":
            continue
        verdict = opts.health.check(opts.out, model) if opts.health is not None else {"ok": True, "checks": []}
        if opts.health is not None:
            remember(opts.out, model, verdict, target, change["engine"])
        change["health"] = verdict
        if verdict["ok"]:
            change["verdict"] = "healthy"
            lines.append("{}: installed {} ({}); healthy".format(model, pulled.job_id, why))
        else:
            restored = restore(opts.out, model, installed)
            state.setdefault("bad", {})[model] = [target, state.get("sequence")]
            change.update(verdict="rolled back", error=verdict["reason"], restored=restored)
            lines.append("{}: {} failed its health gate ({}); {}".format(model, pulled.job_id, verdict["reason"],
                                                                         restored))
            failed = True
        changes.append(change)
    if not changes:
        return Cycle("unchanged", lines or ["unchanged: {}".format(", ".join(opts.models))])
    cycle = Cycle("failed" if failed else "changed", lines, {"changes": changes})
    cycle.backoff = transient
    return cycle


def _record(opts, state):
    """The rollout record (fetched only when it changed, else the one kept), or None when the
    channel has none."""
    key = record_key(opts.project, opts.channel)
    try:
        body, etag = fetch_if_changed(opts.store, key, state.get("etag") if state.get("record") else None, opts.urls)
    except Missing:
        state.pop("record", None)
        state.pop("etag", None)
        return None
    if body is None:
        return state["record"]
    record = open_record(body, opts.public_key_text, opts.project, opts.channel, state.get("sequence", 0),
                         opts.now())
    if record["sequence"] != state.get("sequence"):
        state.pop("bad", None)                      # a new sequence clears what failed before
    state.update(record=record, etag=etag, sequence=record["sequence"])
    return record


def _back_off(state, now):
    """One more failed cycle: the next one waits 1, 2, 4 ... minutes (at most 6 h), with jitter."""
    state["failures"] = state.get("failures", 0) + 1
    wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (state["failures"] - 1)) * random.uniform(0.5, 1.0)
    state["next_try"] = now + wait
    return wait


def _state(out):
    try:
        state = read_json(os.path.join(out, STATE))
        return state if isinstance(state, dict) else {}
    except (IOError, OSError, ValueError):
        return {}


def _lock(out):
    """An exclusive, non-blocking lock on OUT/.fleetbuild-agent.lock (released when the process
    dies, so a killed cycle never blocks the next); None when another cycle holds it."""
    import fcntl

    fd = os.open(os.path.join(out, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (IOError, OSError) as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return fd


def summary_json(cycle):
    return json.dumps({"status": cycle.status, "lines": cycle.lines}, sort_keys=True)
