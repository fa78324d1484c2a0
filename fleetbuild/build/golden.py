"""Golden samples: what a device's health gate runs through a new engine before keeping it.

At publish, per model: one batch of inputs (the model's first calibration batch, else seeded random
data at the profile's opt shape, as `matrix accuracy` makes them) and the outputs ONNX Runtime
computes from the fp32 model on the controller (one thread: the same bytes every time, so a
re-publish is idempotent). Each array is a .npy blob in the store, by content; each release entry
lists them with the cosine similarity its precision must reach (the model's `tolerance.cosine`,
else a sanity floor per precision: the gate catches an engine gone wrong, `matrix accuracy`
measures precision). The index is signed, so the device trusts the hashes it checks them by.
"""
from __future__ import annotations

import hashlib
import io
from typing import Any, Mapping

from fleetbuild.plan.accuracy import AccuracyError, make_feeds
from fleetbuild.plan.planner import model_facts

FLOOR = {"fp32": 0.999, "tf32": 0.999, "fp16": 0.99, "bf16": 0.99, "int8": 0.9, "fp8": 0.9}


class GoldenSamples:
    """Per model: {"inputs": {name: {sha256, size}}, "outputs": {...}} stored once, or None (and
    why) when the model cannot be run here."""

    def __init__(self, config: Any, store: Any, inspector: Any) -> None:
        self.config, self.store, self.inspector = config, store, inspector
        self._made: dict[str, tuple[dict | None, str]] = {}

    def entry(self, model_name: str, precision: str) -> dict[str, Any] | None:
        """The `golden` field of a release entry of `model_name` at `precision`, or None."""
        if model_name not in self._made:
            self._made[model_name] = self._make(model_name)
        samples, _ = self._made[model_name]
        if samples is None:
            return None
        model = self.config.models[model_name]
        cosine = model.tolerance.cosine if model.tolerance and model.tolerance.cosine else FLOOR.get(precision, 0.9)
        return {**samples, "cosine": cosine}

    def why_not(self, model_name: str) -> str:
        return self._made.get(model_name, (None, ""))[1]

    def _make(self, model_name: str) -> tuple[dict | None, str]:
        import numpy as np
        import onnxruntime

        model = self.config.models[model_name]
        facts = model_facts(self.config, model, self.inspector.hasher, self.inspector)
        if facts.info is None:
            return None, "the model cannot be read"
        try:
            feeds, _ = make_feeds(facts, model.inputs)
        except AccuracyError as err:
            return None, str(err)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 4
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(str(model.onnx), options, providers=["CPUExecutionProvider"])
            feed = {name: np.ascontiguousarray(value) for name, value in feeds[0].items()}
            outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        except Exception as err:                # ONNX Runtime's own refusal: no golden samples, said
            return None, f"ONNX Runtime cannot run it: {str(err).strip().splitlines()[0][:200]}"
        return {"inputs": {name: self._put(value) for name, value in sorted(feed.items())},
                "outputs": {name: self._put(np.asarray(value)) for name, value in sorted(outputs.items())}}, ""

    def _put(self, array: Any) -> Mapping[str, Any]:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        key = f"blobs/sha256/{digest}"
        if not self.store.exists(key):
            self.store.write_bytes(key, data)
        return {"sha256": digest, "size": len(data)}
