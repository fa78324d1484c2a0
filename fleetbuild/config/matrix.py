"""Matrix expansion with GitHub Actions' include/exclude semantics, and the jobs it yields.

`expand` is the generic engine (dimensions -> combinations), tested against GitHub's documented
examples. `jobs_from_config` maps fleet.toml's [matrix] onto it with the dimensions model, target,
precision and variant (variant's only original value is "": an include naming a variant always
adds a new job).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from fleetbuild.config.fleet import FleetConfig
from fleetbuild.errors import ConfigError
from fleetbuild.config.options import OPTION_NAMES, PRECISIONS, BuildOptions


def expand(dimensions: Mapping[str, Sequence[Any]], exclude: Sequence[Mapping[str, Any]] = (),
           include: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Combinations of `dimensions`, minus partial matches of `exclude`, then `include` applied.

    An include entry is merged into every original combination whose dimension values it does not
    contradict (values added by earlier includes may be overwritten); an entry that fits none
    becomes a new combination. Combinations keep the documented order: originals, then additions.
    """
    keys = list(dimensions)
    originals = [dict(zip(keys, values)) for values in itertools.product(*dimensions.values())] if keys else []
    originals = [combo for combo in originals
                 if not any(all(combo.get(k) == v for k, v in rule.items()) for rule in exclude)]
    added: list[dict[str, Any]] = []
    for entry in include:
        merged = False
        for combo in originals:
            if all(combo[k] == v for k, v in entry.items() if k in dimensions):
                combo.update(entry)
                merged = True
        if not merged:
            added.append(dict(entry))
    return originals + added


@dataclass(frozen=True)
class Job:
    id: str
    model: str
    target: str
    precision: str
    variant: str
    options: BuildOptions        # resolved: TensorRT defaults < [defaults] < model < matrix cell


def job_id(model: str, target: str, precision: str, variant: str = "") -> str:
    return f"{model}/{target}/{precision}" + (f"+{variant}" if variant else "")


def jobs_from_config(config: FleetConfig) -> list[Job]:
    """Every job of the matrix, in a stable order (the config's model and target order)."""
    spec = config.matrix
    precisions = spec.precisions or tuple(dict.fromkeys(
        p for name in spec.models for p in config.models[name].precisions))
    # Each model builds its own precisions unless [matrix] precisions names them for every model.
    implicit = [] if spec.precisions else [{"model": name, "precision": p} for name in spec.models
                                           for p in precisions if p not in config.models[name].precisions]
    combos = expand({"model": spec.models, "target": spec.targets, "precision": precisions,
                     "variant": ("",)}, list(spec.exclude) + implicit, spec.include)
    jobs, seen = [], {}
    resolved: dict[tuple, BuildOptions] = {}
    for index, combo in enumerate(combos):
        missing = [d for d in ("model", "target", "precision") if d not in combo]
        if missing:
            entry = _include_index(spec.include, combo)
            raise ConfigError(config.source, f"matrix.include[{entry}]",
                              "adds a new job but does not name its " + " and ".join(missing),
                              "a new job needs model, target and precision; to change existing jobs, "
                              "name only values they already have")
        cell_items = tuple(sorted((k, v) for k, v in combo.items() if k in OPTION_NAMES))
        options = resolved.get((combo["model"], cell_items))
        if options is None:
            model = config.models[combo["model"]]
            options = config.defaults.merged(model.options).merged(BuildOptions(**dict(cell_items))).resolved()
            resolved[(combo["model"], cell_items)] = options
        job = Job(id=job_id(combo["model"], combo["target"], combo["precision"], combo.get("variant", "")),
                  model=combo["model"], target=combo["target"], precision=combo["precision"],
                  variant=combo.get("variant", ""), options=options)
        if job.id in seen:
            raise ConfigError(config.source, "matrix.include",
                              f"two entries produce job '{job.id}' with different options",
                              "give one of them a distinct variant = \"...\"")
        seen[job.id] = index
        jobs.append(job)
    if not jobs:
        raise ConfigError(config.source, "matrix",
                          "no jobs left after exclude", "check matrix.exclude and the models' precisions")
    return _ordered(jobs, config)


def _include_index(include: Sequence[Mapping[str, Any]], combo: Mapping[str, Any]) -> int:
    return next((i for i, e in enumerate(include) if all(combo.get(k) == v for k, v in e.items())), 0)


def _ordered(jobs: list[Job], config: FleetConfig) -> list[Job]:
    models = {name: i for i, name in enumerate(config.models)}
    targets = {name: i for i, name in enumerate(config.matrix.targets)}
    return sorted(jobs, key=lambda j: (models.get(j.model, len(models)), targets.get(j.target, len(targets)),
                                       j.target, PRECISIONS.index(j.precision), j.variant))

