"""The shape of a probe's facts (fleetbuild-remote probe), checked before anything chooses with
them: a facts file of the wrong shape is an error naming the field, never "a device without a GPU"
(Python 3.6, standard library; the controller uses the same check)."""
import re

_CC = re.compile(r"\d{1,2}\.\d{1,2}\Z")
FLAVORS = ("tensorrt", "tensorrt-rtx")


class FactsError(ValueError):
    pass


def check_facts(facts):
    """`facts` when it has the probe's shape; else FactsError naming the first wrong field."""
    if not isinstance(facts, dict):
        raise FactsError("facts must be a JSON object (a probe's output), not a JSON {}".format(_kind(facts)))
    for key in ("gpus", "tensorrt"):
        if key not in facts:
            raise FactsError("facts have no '{}' (is this a probe's output? fleetbuild-remote.pyz probe "
                             "writes it)".format(key))
    _list_of_objects(facts, "gpus")
    for index, gpu in enumerate(facts["gpus"]):
        cc = gpu.get("compute_capability")
        if cc is not None and not (isinstance(cc, str) and _CC.match(cc)):
            raise FactsError("gpus[{}].compute_capability is {!r}: expected a string like \"8.7\" or "
                             "null".format(index, cc))
        if "name" in gpu and not isinstance(gpu["name"], (str, type(None))):
            raise FactsError("gpus[{}].name is a JSON {}: expected a string".format(index, _kind(gpu["name"])))
    _list_of_objects(facts, "tensorrt")
    for index, install in enumerate(facts["tensorrt"]):
        if install.get("flavor") not in FLAVORS:
            raise FactsError("tensorrt[{}].flavor is {!r}: expected one of {}".format(
                index, install.get("flavor"), ", ".join(FLAVORS)))
        version = install.get("version")
        if version is not None and not (isinstance(version, str) and re.match(r"\d+\.", version)):
            raise FactsError("tensorrt[{}].version is {!r}: expected a string like \"10.3.0\" or null".format(
                index, version))
    jetson = facts.get("jetson")
    if jetson is not None and not isinstance(jetson, dict):
        raise FactsError("jetson is a JSON {}: expected an object or null".format(_kind(jetson)))
    return facts


def _list_of_objects(facts, key):
    value = facts[key]
    if not isinstance(value, list):
        raise FactsError("{} is a JSON {}: expected a list (of objects)".format(key, _kind(value)))
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise FactsError("{}[{}] is a JSON {}: expected an object".format(key, index, _kind(item)))


def _kind(value):
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number"}.get(type(value), type(value).__name__)
