"""The benchmark's experiments, read from the workflow config: which models train on which data.

The config (``config/default.yaml``, ``config/paper.yaml``; schema in
``workflow/schemas/config.schema.yaml``) declares datasets and experiments. An experiment trains
its models on one dataset for several seeds; an optional ``sweep`` expands a model into one model
per value of a parameter (``latent_dim``, or a ``{n_basis}`` placeholder in the design formula).
:func:`load_plan` validates the config and expands it into a :class:`Plan`: the set of runs
(dataset x model x seed) that the Snakemake rules build, and what each table and figure shows.

Model settings merge, later winning: ``training`` (global) < the dataset's ``model_defaults`` <
the experiment's ``defaults`` < the model's own mapping. This module must not import torch (the
workflow imports it at parse time, once per job on a cluster).

Identical trainings run once. Two models of one dataset whose resolved settings are the same (a
basis sweep's ``n_basis = 4`` and the main experiment's model with 4 frequencies; the label, key
order and keys set to :class:`lmmvae.config.ModelConfig`'s default do not count) train once per
seed: a :class:`Training`, named by the content of its model YAML (``<variant>-<sha256[:10]>`` of
:meth:`Plan.training_yaml`), and every (model, seed) that uses it reads its metrics, predictions
and latents. Named by content, not by a member model, so that editing one member gives that model a
new training and leaves the others' as they were (the workflow reruns nothing else).

This module reads and checks the config; the plan's records and queries are in
:mod:`lmmvae.reporting.plan`, the naming of trainings by content in
:mod:`lmmvae.reporting.trainings` (every name is importable from here too).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import re
from pathlib import Path
from typing import Any

from lmmvae.classical.family import is_classical  # torch-free, like this module
from lmmvae.config import ModelConfig  # torch-free
from lmmvae.data.sets.generators import GENERATORS, check_options, workflow_generators
from lmmvae.errors import ConfigError
from lmmvae.model.objective_kinds import objective_kind
from lmmvae.reporting.plan import DatasetSpec, Experiment, Plan, Run, SeedPair
from lmmvae.reporting.schema import validate_config
from lmmvae.reporting.trainings import ModelSpec, name_trainings
from lmmvae.runs.yamlio import exponent_floats


#: metrics where larger is better; every other metric (MSE, NLL) is better when smaller
HIGHER_IS_BETTER = ("mcc_truth", "mcc_seeds")
#: diagnostics, not scores: shown in the tables, never bold (lmmvae.answers.diagnostics)
DIAGNOSTICS = ("active_dims", "explained_share")
METRIC_LABELS = {
    "active_dims": "Active latent dims",
    "explained_share": "Latent variance explained by the covariates",
    "mse_impute": "Imputation MSE",
    "mse_test": "Test MSE",
    "nll_test": "Test NLL",
    "mcc_truth": "MCC (truth)",
    "mcc_seeds": "MCC (seeds)",
}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")



def load_plan(config: dict, schema_path: str | os.PathLike | None = None) -> Plan:
    """Validate ``config`` against the JSON schema and expand it into a :class:`Plan`.

    Raises :class:`ConfigError` with a one-line message naming the config path at fault.
    """
    if not config:
        raise ConfigError(
            "the config is empty: run snakemake with --configfile config/default.yaml"
        )
    config = exponent_floats(config)  # Snakemake's YAML 1.1 loader leaves `lr: 1e-3` a string
    if schema_path is not None:
        validate_config(config, schema_path)
    device = config.get("device", "cpu")
    datasets = {name: _dataset(name, spec) for name, spec in config["datasets"].items()}
    models: dict[tuple[str, str], ModelSpec] = {}
    origin: dict[tuple[str, str], str] = {}  # model -> experiment that declared it
    seeds_of: dict[tuple[str, str], set[int]] = {}
    experiments: dict[str, Experiment] = {}
    global_seeds = _seeds(config.get("seeds", 2))

    for exp_name, spec in config["experiments"].items():
        where = f"experiments.{exp_name}"
        dataset = spec["dataset"]
        if dataset not in datasets:
            raise ConfigError(
                f"{where}.dataset: unknown dataset {dataset!r}; declared: {', '.join(datasets)}"
            )
        seeds = _seeds(spec.get("seeds", global_seeds))
        defaults = _merge(
            config.get("training", {}),
            config["datasets"][dataset].get("model_defaults", {}),
            spec.get("defaults", {}),
        )
        expanded = _expand_models(where, dataset, spec, defaults)
        for model in expanded:
            key = (dataset, model.name)
            if key in models and models[key] != model:
                raise ConfigError(
                    f"{where}.models.{model.base}: model {model.name!r} of dataset {dataset!r} is "
                    f"also declared by experiments.{origin[key]} with other settings; rename one"
                )
            models[key] = model
            origin.setdefault(key, exp_name)
            seeds_of.setdefault(key, set()).update(seeds)
        experiments[exp_name] = _experiment(where, exp_name, spec, seeds, expanded)

    for exp in experiments.values():
        _check_references(exp, models, seeds_of)
    for key, seeds in seeds_of.items():  # classical rows are deterministic: one seed gives them all
        if is_classical(models[key].config["variant"]):
            seeds_of[key] = {min(seeds)}
    runs = [Run(d, m, s) for (d, m), seeds in seeds_of.items() for s in sorted(seeds)]
    names, yamls = name_trainings(models)
    return Plan(device, datasets, models, experiments, runs, _seed_pairs(experiments, models), names, yamls)


def _experiment(where: str, name: str, spec: dict, seeds: list[int], expanded: list[ModelSpec]) -> Experiment:
    """The :class:`Experiment` record of ``experiments.<name>`` (its models expanded already)."""
    experiment = Experiment(
        name=name,
        title=spec.get("title", name.replace("_", " ")),
        dataset=spec["dataset"],
        seeds=tuple(seeds),
        models=[m.name for m in expanded],
        references=list(spec.get("references", [])),
        metrics=_metrics(spec["metrics"]),
        sweep_parameter=spec["sweep"]["parameter"] if "sweep" in spec else None,
        mcc_between_seeds=bool(spec.get("mcc_between_seeds", False)),
        figures=copy.deepcopy(spec.get("figures", {})),
    )
    if "mcc_seeds" in experiment.metrics and not spec.get("mcc_between_seeds"):
        raise ConfigError(f"{where}.metrics: mcc_seeds needs `mcc_between_seeds: true`")
    return experiment


def _check_references(exp: Experiment, models: dict, seeds_of: dict) -> None:
    """Each reference model exists on the experiment's dataset (and runs its seeds); each figure checks."""
    where = f"experiments.{exp.name}"
    for ref in exp.references:
        if (exp.dataset, ref) not in models:
            valid = sorted(n for d, n in models if d == exp.dataset)
            raise ConfigError(
                f"{where}.references: no model {ref!r} on dataset {exp.dataset!r}; "
                f"declared: {', '.join(valid)}"
            )
        seeds_of[(exp.dataset, ref)].update(exp.seeds)
    for fig_name, fig in exp.figures.items():
        _check_figure(f"{where}.figures.{fig_name}", exp, fig)


def _seed_pairs(experiments: dict[str, Experiment], models: dict) -> list[SeedPair]:
    """The (model, seed a, seed b) pairs whose latents the MCC between seeds compares, sorted."""
    pairs: set[SeedPair] = set()
    for exp in experiments.values():
        if exp.mcc_between_seeds:
            for name in exp.all_models:
                if not objective_kind(models[(exp.dataset, name)].config.get("objective", "elbo")).trains_encoder:
                    continue  # GSNN has no latent posterior (SPEC 4): no MCC
                if is_classical(models[(exp.dataset, name)].config["variant"]):
                    continue  # mixedlm, mean: no latent space, no MCC
                for a, b in itertools.combinations(sorted(exp.seeds), 2):
                    pairs.add(SeedPair(exp.dataset, name, a, b))
    return sorted(pairs, key=lambda p: (p.dataset, p.model, p.seed_a, p.seed_b))



def _dataset(name: str, spec: dict) -> DatasetSpec:
    where = f"datasets.{name}"
    generator = spec["generator"]
    valid = workflow_generators()
    if generator not in valid:
        raise ConfigError(f"{where}.generator: {generator!r} is not one of {', '.join(valid)}")
    check_options(generator, spec.get("options") or {}, f"{where}.options")
    if not GENERATORS.get(generator).raw:
        for key in ("raw", "synthetic"):
            if key in spec:
                raw_ones = [name for name in valid if GENERATORS.get(name).raw]
                raise ConfigError(
                    f"{where}.{key}: only {', '.join(raw_ones)} read a raw directory"
                )
    else:
        check_options(f"{generator}-synthetic", spec.get("synthetic") or {}, f"{where}.synthetic")
    raw = spec.get("raw")
    if raw is not None and not Path(raw).is_dir():
        raise ConfigError(
            f"{where}.raw: directory {raw!r} does not exist (set raw: null for a synthetic cohort)"
        )
    return DatasetSpec(
        name=name,
        generator=generator,
        options=dict(spec.get("options") or {}),
        raw=raw,
        synthetic=dict(spec.get("synthetic") or {}),
    )


def _expand_models(where: str, dataset: str, spec: dict, defaults: dict) -> list[ModelSpec]:
    sweep = spec.get("sweep")
    swept = set(sweep.get("models", spec["models"])) if sweep else set()
    for name in swept - set(spec["models"]):
        raise ConfigError(f"{where}.sweep.models: {name!r} is not a model of this experiment")
    out = []
    for base, own in spec["models"].items():
        own = dict(own)
        label = own.pop("label", base)
        if "device" in own:
            raise ConfigError(
                f"{where}.models.{base}.device: set `device` at the top level of the config"
            )
        settings = _merge(defaults, own)
        if base in swept:
            for value in sweep["values"]:
                parameter = sweep["parameter"]
                config = _apply_sweep(settings, parameter, value)
                name = f"{base}_{parameter}{value}"
                _check_filled(f"{where}.models.{base}", config)
                out.append(ModelSpec(dataset, name, base, label, config, parameter, value))
        else:
            _check_filled(f"{where}.models.{base}", settings)
            out.append(ModelSpec(dataset, base, base, label, settings))
        if "variant" not in out[-1].config:
            raise ConfigError(f"{where}.models.{base}: `variant` is missing")
        _check_model_keys(f"{where}.models.{base}", out[-1].config)
    return out


def _check_model_keys(where: str, config: dict) -> None:
    """Unknown keys fail here, at parse time, rather than in the training job (types and values
    are checked by `lmmvae fit`, whose validation imports torch)."""
    valid = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = sorted(set(config) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where}: unknown model key(s) {', '.join(map(repr, unknown))} (after merging "
            f"training/model_defaults/defaults); valid: {', '.join(valid)}, label"
        )


def _apply_sweep(settings: dict, parameter: str, value: Any) -> dict:
    """Fill ``{parameter}`` placeholders in string settings, or else set the key ``parameter``."""
    uses_placeholder = False

    def fill(node):
        nonlocal uses_placeholder
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str) and f"{{{parameter}}}" in node:
            uses_placeholder = True
            return node.replace(f"{{{parameter}}}", str(value))
        return node

    config = fill(settings)
    if not uses_placeholder:
        config[parameter] = value
    return config


def _check_filled(where: str, node: Any, path: str = "") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _check_filled(where, v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_filled(where, v, f"{path}[{i}]")
    elif isinstance(node, str) and (match := _PLACEHOLDER.search(node)):
        raise ConfigError(
            f"{where}{path}: placeholder {{{match.group(1)}}} is not filled; declare "
            f"`sweep: {{parameter: {match.group(1)}, values: [...]}}` for this model"
        )


def _check_figure(where: str, exp: Experiment, fig: dict) -> None:
    if fig["kind"] in ("trajectories", "latent_effects"):
        if fig["model"] not in exp.all_models:
            raise ConfigError(
                f"{where}.model: {fig['model']!r} is not a model of this experiment; "
                f"valid: {', '.join(exp.all_models)}"
            )
        fig.setdefault("seed", exp.seeds[0])
        if fig["seed"] not in exp.seeds:
            raise ConfigError(f"{where}.seed: {fig['seed']} is not one of the seeds {exp.seeds}")
        return
    if fig["kind"] == "sweep" and exp.sweep_parameter is None:
        raise ConfigError(f"{where}: a `sweep` figure needs a `sweep:` in its experiment")
    fig.setdefault("metrics", list(exp.metrics))
    for metric in fig["metrics"]:
        if metric == "mcc_seeds" and not exp.mcc_between_seeds:
            raise ConfigError(f"{where}.metrics: mcc_seeds needs `mcc_between_seeds: true`")


def _metrics(spec: list | dict) -> dict[str, str]:
    if isinstance(spec, list):
        return {m: METRIC_LABELS[m] for m in spec}
    return {m: (label or METRIC_LABELS[m]) for m, label in spec.items()}


def _seeds(spec: int | list) -> list[int]:
    return list(range(spec)) if isinstance(spec, int) else sorted(spec)


def _merge(*layers: dict) -> dict:
    """Deep merge of mappings, later layers winning (nested mappings such as `prior:` merge too)."""
    out: dict = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = _merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out
