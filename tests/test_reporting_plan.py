"""Reporting of the benchmark, config -> plan: sweeps expanded, settings merged in their order, seed
pairs for MCC, and one-line config errors that name the place."""

from __future__ import annotations

import pytest

from lmmvae.errors import ConfigError
from lmmvae.reporting.experiments import load_plan

SCHEMA = "workflow/schemas/config.schema.yaml"


def base_config(**experiment) -> dict:
    exp = {"dataset": "d", "metrics": ["mse_test"],
           "models": {"lmm": {"variant": "olmm", "design": "fourier(t, {K}, period=10) + (1 | id)",
                              "lr": 0.1}}}
    exp.update(experiment)
    return {"seeds": 2, "training": {"epochs": 5, "lr": 0.01},
            "datasets": {"d": {"generator": "health-mnist", "model_defaults": {"epochs": 7}}},
            "experiments": {"e": exp}}


def test_plan_expands_sweeps_merges_settings_and_pairs_seeds():
    config = base_config(sweep={"parameter": "K", "values": [1, 3]}, mcc_between_seeds=True,
                         defaults={"batch_size": 16}, seeds=[0, 1, 2])
    config["experiments"]["e"]["models"]["g"] = {"variant": "olmm", "objective": "gsnn"}
    config["experiments"]["e"]["sweep"]["models"] = ["lmm"]
    plan = load_plan(config, SCHEMA)
    assert plan.experiments["e"].models == ["lmm_K1", "lmm_K3", "g"]
    lmm3 = plan.model("d", "lmm_K3")
    # training < dataset model_defaults < experiment defaults < model
    assert lmm3.config == {"epochs": 7, "lr": 0.1, "batch_size": 16, "variant": "olmm",
                           "design": "fourier(t, 3, period=10) + (1 | id)"}
    assert (lmm3.base, lmm3.sweep_parameter, lmm3.sweep_value) == ("lmm", "K", 3)
    assert len(plan.runs) == 9
    # MCC between seeds: 3 pairs per ELBO model, none for the GSNN model (no posterior)
    pairs = {(p.model, p.seed_a, p.seed_b) for p in plan.seed_pairs}
    assert pairs == {(m, a, b) for m in ("lmm_K1", "lmm_K3") for a, b in [(0, 1), (0, 2), (1, 2)]}


def test_plan_sweep_of_a_model_key():
    config = base_config(sweep={"parameter": "latent_dim", "values": [8, 16]})
    config["experiments"]["e"]["models"]["lmm"]["design"] = "t + (1 | id)"
    plan = load_plan(config, SCHEMA)
    assert plan.model("d", "lmm_latent_dim16").config["latent_dim"] == 16


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["experiments"]["e"].update(colour="red"),
     "experiments.e: unknown key 'colour'; valid keys: dataset, defaults, figures"),
    (lambda c: c["datasets"]["d"].update(generator="mnist"),
     "datasets.d.generator: 'mnist' is not one of clinical-trial, health-mnist, physionet, rotating-mnist"),
    (lambda c: c["experiments"]["e"].update(figures={"f": {"kind": "trajectories", "modle": "x"}}),
     "experiments.e.figures.f: unknown key 'modle'"),
    (lambda c: c["experiments"]["e"].update(metrics=["mse"]),
     "experiments.e.metrics.0: 'mse' is not one of mse_impute"),
    (lambda c: None, "placeholder {K} is not filled"),
    (lambda c: c["experiments"]["e"].update(sweep={"parameter": "K", "values": [1]}, dataset="x"),
     "experiments.e.dataset: unknown dataset 'x'; declared: d"),
    (lambda c: c["experiments"]["e"].update(sweep={"parameter": "K", "values": [1]},
                                            references=["gppvae"]),
     "experiments.e.references: no model 'gppvae' on dataset 'd'"),
    (lambda c: (c["experiments"]["e"].update(sweep={"parameter": "K", "values": [1]}),
                c["experiments"]["e"]["models"]["lmm"].update(epoch=3)),
     "experiments.e.models.lmm: unknown model key(s) 'epoch'"),
    (lambda c: (c["experiments"]["e"].update(sweep={"parameter": "K", "values": [1]}),
                c["experiments"].update(e2={**c["experiments"]["e"], "defaults": {"batch_size": 8}})),
     "model 'lmm_K1' of dataset 'd' is also declared by experiments.e with other settings"),
])
def test_config_errors_are_one_line_and_name_the_place(edit, message):
    config = base_config()
    edit(config)
    with pytest.raises(ConfigError) as err:
        load_plan(config, SCHEMA)
    assert message in str(err.value) and "\n" not in str(err.value)
