"""The Snakemake workflow without the tiny run: trainings shared by resolved content, lint, dry runs
of the paper, default and medium configs listing every job, readable config errors, the profiles
and the conda environment (the real run: tests/test_workflow.py)."""

from __future__ import annotations

import hashlib
import re
import tomllib

import pytest
import yaml

from lmmvae.reporting.experiments import load_plan
from lmmvae.reporting.trainings import training_yaml
from workflow_common import REPO, SCHEMA, TINY, edited_config, job_counts, snakemake

pytestmark = pytest.mark.slow


def test_plan_shares_trainings_by_resolved_content_only():
    """Same dataset and resolved settings -> one training (a sweep value equal to a plain model,
    `objective: elbo` written or left to its default, 1e-3 written as 0.001, the label); another
    dataset, another setting or another seed -> its own."""
    config = yaml.safe_load(TINY.read_text())
    exps = config["experiments"]
    design = "fourier(angle, {n_basis}, period=2*pi)"
    exps["rotating_mnist_basis"]["models"]["slmm"]["lr"] = 0.001
    exps["rotating_plain"] = {
        "dataset": "rotating_mnist", "seeds": 2, "metrics": ["mse_test"],
        "models": {
            "slmm_two": {"variant": "slmm", "latent_dim": 3, "design": design.format(n_basis=2),
                         "objective": "elbo", "lr": 1e-3, "label": "another label"},
            "slmm_other": {"variant": "slmm", "latent_dim": 3, "design": design.format(n_basis=2),
                           "lr": 0.002},
        },
    }
    exps["health_mnist"]["models"]["lmm_sex"]["latent_dim"] = 3
    plan = load_plan(config, SCHEMA)
    names = plan.training_names
    assert names[("rotating_mnist", "slmm_two")] == names[("rotating_mnist", "slmm_n_basis2")]
    distinct = [("rotating_mnist", "slmm_n_basis1"), ("rotating_mnist", "slmm_n_basis2"),
                ("rotating_mnist", "slmm_other")]
    assert len({names[k] for k in distinct}) == 3
    shared = names[("rotating_mnist", "slmm_two")]
    # seeds: the sweep trains seed 0, the plain experiment seeds 0 and 1: seed 0 once, seed 1 once
    trainings = [t for t in plan.trainings if t.name == shared]
    assert [t.seed for t in trainings] == [0, 1]
    # the manifest points both models' rows of seed 0 at the one metrics file
    manifest = plan.manifest(lambda t: f"{t.dataset}/{t.name}/{t.seed}", lambda p: "")
    paths = {(r["model"], r["seed"]): r["path"] for r in manifest["runs"]}
    assert paths[("slmm_two", 0)] == paths[("slmm_n_basis2", 0)] == f"rotating_mnist/{shared}/0"
    assert paths[("slmm_two", 1)] == f"rotating_mnist/{shared}/1"
    # the YAML a training job reads: the settings that differ from the defaults, label-free
    # (likelihood: gaussian, objective: elbo and lr: 0.001, which overrides training's 0.003, are
    # ModelConfig's defaults)
    text = plan.training_yaml("rotating_mnist", shared)
    assert yaml.safe_load(text) == {"variant": "slmm", "design": design.format(n_basis=2),
                                    "latent_dim": 3, "network": "rotating_mnist", "epochs": 2,
                                    "batch_size": 32, "nll_samples": 4, "predict_samples": 4}
    assert yaml.safe_load(plan.training_yaml("rotating_mnist", names[("rotating_mnist", "slmm_other")]))["lr"] == 0.002
    assert shared == "slmm-" + hashlib.sha256(text.encode()).hexdigest()[:10]
    # nested mappings in any key order, an integer for a float setting: the same YAML
    same = training_yaml({"variant": "olmm", "lr": 1, "prior": {"b": 1, "a": {"y": 2, "x": 3}}})
    assert same == training_yaml({"prior": {"a": {"x": 3, "y": 2}, "b": 1}, "lr": 1.0, "variant": "olmm"})
    assert same != training_yaml({"variant": "olmm", "lr": 2, "prior": {"b": 1, "a": {"y": 2, "x": 3}}})


def test_lint_is_clean():
    rc, out = snakemake("--lint", workdir=REPO, configfile=REPO / "config" / "default.yaml")
    assert rc == 0 and "Congratulations" in out, out[-3000:]


def test_paper_dry_run_lists_every_job_of_the_papers_experiments(tmp_path):
    # the profiles no longer print shell commands; ask for them to see each job's --device
    rc, out = snakemake("--dry-run", "--printshellcmds", workdir=tmp_path,
                        configfile=REPO / "config" / "paper.yaml")
    assert rc == 0, out[-3000:]
    plan = load_plan(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), SCHEMA)
    counts = job_counts(out)
    # each run evaluates itself; 275 neural runs (5 seeds, 4 on Rotating MNIST) and 4 classical
    # rows, fitted once each (deterministic: one seed gives them all)
    assert len(plan.runs) == 275 + 4
    # identical trainings run once: the basis sweeps' n_basis=4 models are the main experiments'
    # olmm_elbo and slmm_elbo (Rotating MNIST 2 models x 4 seeds, PhysioNet 2 x 5): 18 fewer jobs
    shared = {(d, m) for (d, m), name in plan.training_names.items() if len(plan.sharing(d, name)) > 1}
    assert shared == {(d, m) for d in ("rotating_mnist", "physionet")
                      for m in ("olmm_elbo", "slmm_elbo", "olmm_basis_n_basis4", "slmm_basis_n_basis4")}
    assert counts["fit"] + counts["fit_predictions"] == len(plan.trainings) == 279 - 18 == 261
    classical = [r for r in plan.runs if plan.model(r.dataset, r.model).config["variant"] in ("mixedlm", "mean")]
    assert len(classical) == 4 and {r.seed for r in classical} == {0}
    drawn = {(e.dataset, f["model"], f["seed"]) for e in plan.experiments.values()
             for f in e.figures.values() if f["kind"] == "trajectories"}  # runs whose predictions are drawn
    assert "evaluate" not in counts and counts["fit_predictions"] == len(drawn) >= 1
    assert counts["mcc_seeds"] == len(plan.training_pairs) == len(plan.seed_pairs) == 120  # none shared
    assert counts["model_yaml"] == len(set(plan.training_names.values())) == len(plan.models) - 4
    assert counts["data"] == 4 and counts["synthetic_raw"] == 2
    assert counts["table"] == len(plan.experiments) == 7
    # the experiments of the issue, by base model and sweep
    bases = {name: sorted({plan.model(e.dataset, m).base for m in e.all_models})
             for name, e in plan.experiments.items()}
    assert bases["health_mnist"] == ["gppvae", "lmm_age", "lmm_disease", "lmm_sex", "lvae", "svgpvae"]
    assert bases["rotating_mnist"] == ["cvae", "gppvae", "lvae", "olmm_elbo", "olmm_gsnn",
                                       "slmm_elbo", "slmm_gsnn", "svgpvae"]
    assert {"mixedlm", "mean"} <= set(bases["physionet"]) and {"mixedlm", "mean"} <= set(bases["identifiability_trial"])
    assert {plan.model("physionet", m).config["objective"] for m in plan.experiments["physionet"].models
            if m.startswith(("olmm", "slmm"))} == {"elbo", "gsnn"}
    latent = {n: sorted({plan.model(e.dataset, m).config["latent_dim"] for m in e.models  # classical rows: none
                         if plan.model(e.dataset, m).config["variant"] not in ("mixedlm", "mean")})
              for n, e in plan.experiments.items()}
    assert latent["health_mnist"] == [16, 32]
    assert latent["identifiability_trial"] == [15, 18, 20]
    assert latent["identifiability_health_mnist"] == [8, 16, 32]
    assert plan.experiments["rotating_mnist"].seeds == (0, 1, 2, 3)
    assert plan.experiments["health_mnist"].seeds == (0, 1, 2, 3, 4)
    # device: cuda -> every neural training job requests the GPU and runs with --device cuda; the
    # classical rows (statsmodels, numpy) ask for none
    fit_jobs = re.findall(r"rule fit(?:_predictions)?:\n(?:.*\n)*?\s+resources: (.*)", out)
    assert len(fit_jobs) == 261 and sum("gpu=1" in r for r in fit_jobs) == 257
    assert sum("gpu=0" in r for r in fit_jobs) == 4
    assert out.count("--device cuda") == 261


@pytest.mark.parametrize("name", ["default", "medium"])
def test_default_and_medium_dry_runs_plan_every_experiment(tmp_path, name):
    """The two CPU configs plan every experiment of the paper: a table and the figures of each, one
    job per training (identical trainings once), on the CPU (no GPU requested)."""
    path = REPO / "config" / f"{name}.yaml"
    rc, out = snakemake("--dry-run", workdir=tmp_path, configfile=path)
    assert rc == 0, out[-3000:]
    plan = load_plan(yaml.safe_load(path.read_text()), SCHEMA)
    counts = job_counts(out)
    extra = {"trial_shared"} if name == "default" else set()  # the shared-factor synthetic trial
    assert set(plan.experiments) == {"health_mnist", "rotating_mnist", "rotating_mnist_basis", "physionet",
                                     "physionet_basis", "identifiability_trial", "identifiability_health_mnist",
                                     *extra}
    assert counts["table"] == len(plan.experiments) == 7 + len(extra)
    assert counts["fit"] + counts["fit_predictions"] == len(plan.trainings) < len(plan.runs)
    assert counts["mcc_seeds"] == len(plan.training_pairs) >= 2
    assert "gpu=1" not in out


def test_invalid_config_fails_in_one_readable_line(tmp_path):
    config = edited_config(tmp_path, lambda c: c["experiments"]["physionet"].update(colour="red"))
    rc, out = snakemake("--dry-run", workdir=tmp_path, configfile=config)
    assert rc != 0
    line = next(ln for ln in out.splitlines() if ln.startswith("invalid config"))
    assert line.endswith("experiments.physionet: unknown key 'colour'; valid keys: dataset, "
                         "defaults, figures, mcc_between_seeds, metrics, models, references, "
                         "seeds, sweep, title")


def test_slurm_profile_requests_gpus_and_runtimes(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    rc, out = snakemake("--dry-run", "--workflow-profile", "profiles/slurm", workdir=tmp_path,
                        configfile=REPO / "config" / "paper.yaml")
    assert rc == 0, out[-3000:]
    assert "Using workflow specific profile profiles/slurm" in out
    fit = re.findall(r"rule fit:\n(?:.*\n)*?\s+resources: (.*)", out)
    assert fit and all("runtime=720" in r for r in fit)
    # every neural training asks for a GPU; the 4 classical rows (statsmodels, numpy) do not
    assert sum("gpu=1" in r for r in fit) == len(fit) - 4 and sum("gpu=0" in r for r in fit) == 4


def test_workflow_conda_env_lists_the_project_dependencies():
    env = yaml.safe_load((REPO / "workflow" / "envs" / "lmmvae.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert pip == project["dependencies"]
