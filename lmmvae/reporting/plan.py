"""The plan of the benchmark workflow: datasets, models, experiments and the runs they need.

:func:`lmmvae.reporting.experiments.load_plan` builds a :class:`Plan` from the workflow config;
this module holds its records and what the plan answers once built: which training job each run
reads (:meth:`Plan.training`, trainings named by content in :mod:`lmmvae.reporting.trainings`) and
the manifest that ``lmmvae report aggregate`` labels metrics files with (:meth:`Plan.manifest`).
Torch-free: the workflow imports it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lmmvae.reporting.trainings import ModelSpec, Training, TrainingPair



@dataclass(frozen=True)
class DatasetSpec:
    name: str
    generator: str  # an `lmmvae data` command
    options: dict
    raw: str | None = None  # raw directory (physionet, clinical-trial); None = synthetic cohort
    synthetic: dict = field(default_factory=dict)

    @property
    def needs_raw(self) -> bool:
        """Whether its ``lmmvae data`` command reads a raw directory (:mod:`lmmvae.data.sets.generators`)."""
        from lmmvae.data.sets.generators import GENERATORS

        return GENERATORS.get(self.generator).raw


@dataclass(frozen=True)
class Run:
    dataset: str
    model: str
    seed: int


@dataclass(frozen=True)
class SeedPair:
    """Two runs of one model whose latents are compared by MCC (identifiability)."""

    dataset: str
    model: str
    seed_a: int
    seed_b: int

@dataclass
class Experiment:
    name: str
    title: str
    dataset: str
    seeds: tuple[int, ...]
    models: list[str]  # expanded model names, in declaration order (sweep values inner)
    references: list[str]  # models of other experiments on the same dataset
    metrics: dict[str, str]  # metric -> column label
    sweep_parameter: str | None
    mcc_between_seeds: bool
    figures: dict[str, dict]

    @property
    def all_models(self) -> list[str]:
        return self.models + [r for r in self.references if r not in self.models]


@dataclass
class Plan:
    device: str
    datasets: dict[str, DatasetSpec]
    models: dict[tuple[str, str], ModelSpec]
    experiments: dict[str, Experiment]
    runs: list[Run]  # (model, seed) as tables show them; several may share one Training
    seed_pairs: list[SeedPair]
    # (dataset, model) -> training name, and (dataset, training name) -> its model YAML
    training_names: dict[tuple[str, str], str] = field(default_factory=dict)
    training_yamls: dict[tuple[str, str], str] = field(default_factory=dict)

    def model(self, dataset: str, name: str) -> ModelSpec:
        return self.models[(dataset, name)]

    def training(self, run: Run) -> Training:
        """The training job whose results ``run`` reports."""
        return Training(run.dataset, self.training_names[(run.dataset, run.model)], run.seed)

    def training_pair(self, pair: SeedPair) -> TrainingPair:
        name = self.training_names[(pair.dataset, pair.model)]
        return TrainingPair(pair.dataset, name, pair.seed_a, pair.seed_b)

    @property
    def trainings(self) -> list[Training]:
        """The training jobs, each once, in the order of the runs that first need them."""
        return list(dict.fromkeys(self.training(r) for r in self.runs))

    @property
    def training_pairs(self) -> list[TrainingPair]:
        return list(dict.fromkeys(self.training_pair(p) for p in self.seed_pairs))

    def training_yaml(self, dataset: str, name: str) -> str:
        """The model YAML of a training (``lmmvae fit --model``): the resolved settings without
        the keys set to their default, in :class:`lmmvae.config.ModelConfig`'s field order."""
        return self.training_yamls[(dataset, name)]

    def sharing(self, dataset: str, name: str) -> list[str]:
        """The models of ``dataset`` that training ``name`` stands for (declaration order)."""
        return [m for (d, m), t in self.training_names.items() if d == dataset and t == name]

    def manifest(
        self,
        metrics_path: Callable[[Training], str],
        mcc_path: Callable[[TrainingPair], str],
    ) -> dict:
        """What ``lmmvae report aggregate`` needs to label each metrics file (JSON-ready). Models
        that share a training point at the same files, one row each in the metrics table."""

        def labels(dataset: str, name: str) -> dict:
            spec = self.model(dataset, name)
            return {
                "dataset": dataset,
                "model": name,
                "base_model": spec.base,
                "label": spec.label,
                "sweep_parameter": spec.sweep_parameter,
                "sweep_value": spec.sweep_value,
            }

        runs = [
            {
                **labels(r.dataset, r.model),
                "training": self.training_names[(r.dataset, r.model)],
                "seed": r.seed,
                "path": metrics_path(self.training(r)),
            }
            for r in self.runs
        ]
        pairs = [
            {
                **labels(p.dataset, p.model),
                "training": self.training_names[(p.dataset, p.model)],
                "seed": p.seed_a,
                "seed_b": p.seed_b,
                "path": mcc_path(self.training_pair(p)),
                "run_path": metrics_path(self.training(Run(p.dataset, p.model, p.seed_a))),
            }
            for p in self.seed_pairs
        ]
        return {"runs": runs, "seed_pairs": pairs}
