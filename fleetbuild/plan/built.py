"""The graph each job's builder gets, for the rules to check: what is built is what is checked.

Strongly typed builders (TensorRT-RTX, TensorRT 11) take precision from the model, so fleetbuild
converts it before staging (fleetbuild.models.precision: fp16 with onnxconverter-common, int8 as
symmetric Q/DQ); with `downgrade_opset = true`, a model newer than the target's parser is first
converted down to the newest opset it takes (fleetbuild.models.opset). The plan converts the same way, into the same cache and with the same input-dim
renames, so the rules see the converter's casts and types and the build reuses the conversion
instead of doing it again. A conversion that fails is a plan error on the job, with the converter's
own words; other jobs check the source graph.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetbuild.config.tensorrt_releases import best_opset, strongly_typed
from fleetbuild.models.dims import renames
from fleetbuild.models.onnxinfo import OnnxError, OnnxInfo, OnnxInspector
from fleetbuild.plan.problems import Problem


def downgrade_to(job: Any, target: Any, info: OnnxInfo | None) -> int | None:
    """The opset to convert the model down to (`downgrade_opset = true` and a model newer than the
    target's TensorRT parses), else None."""
    if info is None or not job.options.downgrade_opset:
        return None
    backend = job.options.backend
    found = best_opset(backend, target.tensorrt if backend == "tensorrt" else None)
    return found[1] if found is not None and info.opset > found[1] else None


class BuiltGraphs:
    """Per (model, precision, renames): the converted graph's facts, or the problem that stopped it.
    Each is converted once per process and once per cache (ConvertedModels keys by content)."""

    def __init__(self, inspector: OnnxInspector) -> None:
        self.inspector = inspector
        self._seen: dict[tuple, tuple[OnnxInfo | None, tuple[Problem, ...]]] = {}

    def for_job(self, job: Any, target: Any, model: Any, facts: Any) -> tuple[OnnxInfo | None, tuple[Problem, ...]]:
        """(converted graph facts, warnings of what conversion changed), (None, (error,)) when it failed,
        or (None, ()) when the builder gets the source model (or the cache is off: nowhere to convert)."""
        from fleetbuild.models.precision import needs_conversion

        info = facts.info
        if info is None or self.inspector.cache_root is None:
            return None, ()
        typed = strongly_typed(job.options.backend, target.tensorrt)
        convert = needs_conversion(job.precision, typed, info.has_qdq)
        if convert and job.precision == "int8" and not facts.calibration:
            convert = False                      # the calibration rules say what is missing
        opset = downgrade_to(job, target, info)
        if not convert and opset is None:
            return None, ()
        precision = job.precision if convert else None
        renamed = renames(info, model.inputs, job.options.rename_dynamic_dims)
        key = (model.name, precision, tuple(renamed), opset)
        if key not in self._seen:
            self._seen[key] = self._convert(model, precision, facts, renamed, opset)
        return self._seen[key]

    def _convert(self, model: Any, precision: str | None, facts: Any, renamed: Any,
                 opset: int | None) -> tuple[OnnxInfo | None, tuple[Problem, ...]]:
        from fleetbuild.models.precision import ConversionError, ConvertedModels

        converted = ConvertedModels(Path(self.inspector.cache_root))
        try:
            path, notes = converted.convert(model.onnx, facts.content_digest, precision, facts.calibration,
                                            facts.calibration_digest, renamed, opset)
            kept = tuple(Problem("fp16-kept-fp32", note.split(": ", 1)[1], "", "warning")
                         for note in notes if note.startswith("fp16: kept "))
            return self.inspector.inspect(path), kept
        except ConversionError as err:
            hint = (f"re-export {model.name} at opset <= {opset}, or exclude this target" if str(err).startswith("opset")
                    else f"build {precision} from a model exported in {precision}, or leave {precision} out for "
                    f"{model.name} (precisions = [...])")
            return None, (Problem("conversion-failed", str(err), hint),)
        except OnnxError as err:
            return None, (Problem("conversion-failed", f"the {precision} conversion of {model.name} wrote a model "
                                  f"ONNX cannot read: {err.message}", "please report it, with the model"),)
