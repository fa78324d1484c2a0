"""Phased rollouts as devices read them (Python 3.6, standard library).

A rollout record is signed data in the store, one per channel:
releases/<project>/rollouts/<channel>.json holds {"record": "<the record's JSON text>", "signature":
"<minisign signature of that text>"}, so one GET brings both (and one conditional GET answers 304
when nothing changed). The record: project, channel, version (new), previous (the version it
replaces), salt, phases [{"percent", "start"}], halt_at (failure fraction), state (running, halted,
reverted, done), sequence, updated, expires.

No server decides who is in: a device is in the rollout when its cohort value, a hash of (salt,
device id) mapped to [0, 100), is below the current phase's percentage. Phases only widen, so a
device that is in stays in.
"""
import hashlib
import json

from .verify import SignatureError, verify_minisig

STATES = ("running", "halted", "reverted", "done")


class RolloutError(ValueError):
    pass


def record_key(project, channel):
    return "releases/{}/rollouts/{}.json".format(project, channel)


def cohort(salt, device_id):
    """This device's place in the fleet for this rollout, in [0, 100)."""
    digest = hashlib.sha256("{}:{}".format(salt, device_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") * 100.0 / 2 ** 64


def current_percent(record, now):
    """The percentage of the newest phase that has started (0 before the first)."""
    started = [float(p["percent"]) for p in record["phases"] if p.get("start") is not None and p["start"] <= now]
    return max(started) if started else 0.0


def phase_of(record, value):
    """The index of the first phase whose percentage takes a device of cohort `value`."""
    for index, phase in enumerate(record["phases"]):
        if value < float(phase["percent"]):
            return index
    return len(record["phases"]) - 1


def open_record(envelope_bytes, public_key_text, project, channel, min_sequence=0, now=None):
    """The record of a signed envelope, when it is the fleet's, for this project and channel, and
    not older than `min_sequence`; else RolloutError."""
    try:
        envelope = json.loads(envelope_bytes.decode("utf-8"))
        text, signature = envelope["record"], envelope["signature"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RolloutError("the rollout record is not a signed envelope")
    try:
        verify_minisig(text.encode("utf-8"), signature, public_key_text)
    except SignatureError as err:
        raise RolloutError("rollout record signature: {}".format(err))
    record = json.loads(text)
    if record.get("project") != project or record.get("channel") != channel:
        raise RolloutError("the rollout record is for {} {}, not {} {}".format(
            record.get("project"), record.get("channel"), project, channel))
    if record.get("state") not in STATES:
        raise RolloutError("the rollout record has an unknown state {!r}".format(record.get("state")))
    if record.get("sequence", 0) < min_sequence:
        raise RolloutError("rollout record sequence {} is older than {} already seen (replayed?)".format(
            record.get("sequence"), min_sequence))
    if now is not None and record.get("expires") is not None and record["expires"] < now:
        raise RolloutError("the rollout record expired (sequence {})".format(record.get("sequence")))
    return record


def decide(record, device_id, now, installed_version=None):
    """(version this device should run, why): the new version when its cohort is in and the rollout
    is running or done; the previous one when reverted, or when it is not in yet (a new device gets
    the version the fleet runs); what it has when halted."""
    value = cohort(record["salt"], device_id)
    state = record["state"]
    if state == "reverted":
        return record["previous"], "the rollout of {} was reverted".format(record["version"])
    if state == "done":
        return record["version"], "the rollout of {} is done".format(record["version"])
    percent = current_percent(record, now)
    if value < percent:
        if state == "halted" and installed_version != record["version"]:
            return installed_version or record["previous"], "the rollout is halted before this device moved"
        return record["version"], "in the rollout: cohort {:.2f} < {:g} %".format(value, percent)
    return record["previous"], "not in the rollout yet: cohort {:.2f} >= {:g} %".format(value, percent)
