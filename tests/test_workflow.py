"""The Snakemake workflow: the tiny .test config run for real (every rule type), the HTML
report, which jobs rerun after editing one model, identical models trained once, a killed training
job resuming from its checkpoint (lint, dry runs, config errors, profiles: tests/test_workflow_dry.py).

The real run takes about a minute on 2 cores; the other tests reuse its results directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lmmvae.reporting.experiments import load_plan
from workflow_common import (REPO, SCHEMA, SNAKEMAKE, TINY, edited_config, job_counts, plan_of, snakemake,
                             training_dir, workflow_rules)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("tiny")
    # the profiles no longer print each job's shell command (readable logs); ask for it here
    rc, out = snakemake("--cores", "2", "--printshellcmds", workdir=workdir, configfile=TINY)
    assert rc == 0, out[-4000:]
    (workdir / "run.log").write_text(out)
    return workdir


def test_tiny_config_runs_every_rule_type_and_writes_tables_and_figures(tiny):
    log = (tiny / "run.log").read_text()
    executed = set(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M))
    assert executed == workflow_rules() | {"all"}
    assert "--device cpu" in log and "gpu=1" not in log  # device: cpu requests no GPU

    metrics = pd.read_csv(tiny / "results" / "metrics.csv")
    plan = load_plan(yaml.safe_load(TINY.read_text()), SCHEMA)
    runs = set(zip(metrics["dataset"], metrics["model"], metrics["seed"]))
    assert runs == {(r.dataset, r.model, r.seed) for r in plan.runs}
    assert metrics["value"].notna().all()
    pairs = metrics[metrics["metric"] == "mcc_seeds"]
    assert pairs[["seed", "seed_b"]].values.tolist() == [[0, 1]]
    assert 0 <= pairs["value"].iloc[0] <= 1
    gsnn = metrics[metrics["objective"] == "gsnn"]
    # no imputation, MCC or active dimensions without q(z|y); the NLL by prior sampling (SPEC 6)
    assert set(gsnn["metric"]) == {"mse_test", "mse_test_mc_se", "nll_test", "nll_test_se", "nll_test_half",
                                   "nll_importance", "nll_draws", "explained_share"}
    assert (gsnn[gsnn["metric"] == "nll_importance"]["value"] == 0).all()
    # every neural run says how its training ended (2-epoch budget: every run hits it)
    neural = metrics[~metrics["variant"].isin(["mixedlm", "mean"])]
    assert (neural["epoch_budget"] == 2).all() and (neural["epochs_run"] == 2).all()
    assert (neural["stopped_early"] == False).all() and neural["best_epoch"].between(1, 2).all()  # noqa: E712

    for experiment in plan.experiments:
        md = (tiny / "results" / "tables" / f"{experiment}.md").read_text()
        assert "**" in md and "| Model |" in md
        assert "| Stopped early |" in md and "in all 0 stopped early" in md
        assert r"\textbf" in (tiny / "results" / "tables" / f"{experiment}.tex").read_text()
    claims = (tiny / "results" / "tables" / "claims.md").read_text()  # one seed: the rule cannot decide
    assert "slmm (2) not behind slmm (1)" in claims and "too few seeds" in claims and "**undecided**" in claims
    figures = sorted((tiny / "results" / "figures").rglob("*.png"))
    assert len(figures) == sum(len(e.figures) for e in plan.experiments.values()) == 5
    for png in figures:
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert png.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    assert not list((tiny / "results").rglob(".*.tmp"))


def test_training_job_writes_the_metrics_of_a_separate_evaluation(tiny, tmp_path):
    """`fit --evaluate-out` evaluates in the training process: the same JSON, to the byte, as
    `lmmvae evaluate` of the saved run (a reloaded model, a fresh process)."""
    run = training_dir(TINY, "clinical_trial", "olmm_latent_dim2", 1)
    out = tmp_path / "metrics.json"
    done = subprocess.run([sys.executable, "-m", "lmmvae", "evaluate", "--run", run, "--data",
                           "results/data/clinical_trial.h5", "--out", str(out)],
                          cwd=tiny, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    written = tiny / run.replace("results/train", "results/eval") / "metrics.json"
    assert out.read_text() == written.read_text()
    result = json.loads(out.read_text())
    assert set(result["metrics"]) == {"mse_test", "mse_test_mc_se", "nll_test", "nll_test_se", "nll_test_half",
                                      "nll_importance", "nll_draws", "active_dims", "explained_share"}
    history = pd.read_csv(tiny / run / "history.csv")
    assert (result["epochs_run"], result["epoch_budget"], result["stopped_early"]) == (len(history), 2, False)
    after = history[history["warmup"] == 0] if (history["warmup"] == 0).any() else history.tail(1)  # warm-up
    assert result["best_epoch"] == after["epoch"][after["val_loss"].idxmin()]


def test_report_jobs_import_no_torch(tiny):
    """The report jobs rerun with Python's import log on: none of them imports torch (a few
    seconds per job otherwise); the trajectories figure draws from the training job's
    predictions."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    cmd = [SNAKEMAKE, "--directory", str(tiny), "--cores", "2", "--configfile", str(TINY),
           "--forcerun", "aggregate", "figure_trajectories", "figure_latent_effects"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = {rule: sorted((tiny / "results" / "logs").glob(f"{rule}*/**/*.log")) + sorted(
        (tiny / "results" / "logs").glob(f"{rule}.log"))
        for rule in ("aggregate", "table", "figure_metrics", "figure_trajectories", "figure_latent_effects")}
    for rule, paths in logs.items():
        assert paths, rule
        for path in paths:
            text = path.read_text()
            assert re.search(r"^import time:.*\|\s+pandas$", text, flags=re.M), path  # the log is on
            assert not re.search(r"\|\s+torch(\.|$)", text, flags=re.M), f"{path}: imports torch"


def test_report_html_has_the_figures_and_captions(tiny):
    rc, out = snakemake("--report", "report.html", workdir=tiny, configfile=TINY)
    assert rc == 0, out[-3000:]
    html = (tiny / "report.html").read_text()
    assert "Rotating MNIST (tiny), basis functions: mse basis" in html
    assert html.count("latent.png") >= 1 and "trajectories.png" in html
    # the tables rendered in place (HTML, embedded as JSON strings), in the opening text and captions
    tables = re.findall(r'<table class=\\?"lmmvae-table\\?"', html)
    assert len(tables) >= len(yaml.safe_load(TINY.read_text())["experiments"])
    assert "Stopped early</th>" in html and "| Model |" not in html


def test_editing_one_model_reruns_only_its_training_evaluation_and_the_reports(tiny, tmp_path):
    config = edited_config(
        tmp_path, lambda c: c["experiments"]["identifiability_trial"]["models"]["olmm"].update(lr=0.01)
    )
    rc, out = snakemake("--dry-run", workdir=tiny, configfile=config)
    assert rc == 0, out[-3000:]
    # the model's YAML, its two seeds' training (+ evaluation, same job), their MCC, then the
    # manifest (the model's files moved to its new training), metrics.csv and everything drawn from
    # it; no data, no other model, no figure drawn from predictions
    assert job_counts(out) == {"model_yaml": 1, "fit": 2, "mcc_seeds": 1, "manifest": 1,
                               "aggregate": 1, "table": 4, "claims": 1, "figure_metrics": 3, "all": 1}
    old = plan_of(TINY).training_names[("clinical_trial", "olmm_latent_dim2")]
    new = plan_of(config).training_names[("clinical_trial", "olmm_latent_dim2")]
    assert new != old and new.startswith("olmm-")  # a new training, named by its new YAML
    fits = re.findall(r"rule fit:\n(?:.*\n)*?\s+wildcards: (.*)", out)
    assert len(fits) == 2 and all(f"training={new}" in w for w in fits)
    assert "lr: 0.01" in plan_of(config).training_yaml("clinical_trial", new)


def test_identical_models_train_once_and_both_report_its_results(tiny):
    """olmm_gsnn and olmm_gsnn_same of the tiny config have the same settings, written otherwise
    (key order, a key at its default): one model YAML, one training job, one run directory, and
    metrics.csv and the table have a row for each model, with that training's values."""
    plan = plan_of(TINY)
    names = plan.training_names
    shared = names[("physionet", "olmm_gsnn")]
    assert names[("physionet", "olmm_gsnn_same")] == shared
    assert plan.sharing("physionet", shared) == ["olmm_gsnn", "olmm_gsnn_same"]
    assert len(set(names.values())) == len(names) - 1  # no other two models are merged
    assert "prediction" not in plan.training_yaml("physionet", shared)  # the default is left out
    # the real run: one fit job on PhysioNet (its only training), one YAML, one run directory
    log = (tiny / "run.log").read_text()
    fits = re.findall(r"rule fit(?:_predictions)?:\n(?:.*\n)*?\s+wildcards: (.*)", log)
    assert len(fits) == len(plan.trainings) == len(plan.runs) - 1
    assert [w for w in fits if "dataset=physionet" in w] == [f"dataset=physionet, training={shared}, seed=0"]
    assert [p.name for p in (tiny / "results/train/physionet").iterdir()] == [shared]
    assert [p.name for p in (tiny / "results/models/physionet").iterdir()] == [f"{shared}.yaml"]
    metrics = pd.read_csv(tiny / "results" / "metrics.csv")
    rows = {m: metrics[metrics["model"] == m].set_index("metric")["value"]
            for m in ("olmm_gsnn", "olmm_gsnn_same")}
    assert sorted(rows["olmm_gsnn"].index) == ["explained_share", "mse_test", "mse_test_mc_se", "nll_draws",
                                               "nll_importance", "nll_test", "nll_test_half", "nll_test_se"]
    pd.testing.assert_series_equal(rows["olmm_gsnn"], rows["olmm_gsnn_same"])
    table = (tiny / "results" / "tables" / "physionet.md").read_text()
    assert "| oLMM-VAE (GSNN) |" in table and "| oLMM-VAE (GSNN), same |" in table


def test_editing_one_of_two_identical_models_gives_it_its_own_training(tiny, tmp_path):
    """The edited model trains anew under its new name; the other keeps the shared training (no
    fit job for it), whichever of the two is edited."""
    shared = plan_of(TINY).training_names[("physionet", "olmm_gsnn")]
    for edited, kept in [("olmm_gsnn", "olmm_gsnn_same"), ("olmm_gsnn_same", "olmm_gsnn")]:
        config = edited_config(
            tmp_path, lambda c: c["experiments"]["physionet"]["models"][edited].update(lr=0.01)
        )
        plan = plan_of(config)
        assert plan.training_names[("physionet", kept)] == shared
        own = plan.training_names[("physionet", edited)]
        assert own != shared
        rc, out = snakemake("--dry-run", workdir=tiny, configfile=config)
        assert rc == 0, out[-3000:]
        assert job_counts(out) == {"model_yaml": 1, "fit": 1, "manifest": 1, "aggregate": 1,
                                   "table": 4, "claims": 1, "figure_metrics": 3, "all": 1}
        fits = re.findall(r"rule fit:\n(?:.*\n)*?\s+wildcards: (.*)", out)
        assert fits == [f"dataset=physionet, training={own}, seed=0"]


def test_killed_training_job_resumes_from_its_checkpoint(tiny, tmp_path):
    """Kill the workflow while a training job runs: model.pt is absent (never half-written), the
    undeclared checkpoint survives, and the rerun continues from it (the epochs done before the
    kill are kept as they were, not redone). Runs last: it retrains one model of the tiny run."""
    config = edited_config(
        tmp_path, lambda c: c["experiments"]["physionet"]["models"]["olmm_gsnn"].update(epochs=30)
    )
    target_dir = training_dir(config, "physionet", "olmm_gsnn", 0)  # a new training (new epochs)
    run = tiny / target_dir
    target = f"{target_dir}/model.pt"
    cmd = [SNAKEMAKE, target, "--cores", "1", "--directory", str(tiny), "--configfile", str(config)]
    launched = time.time()
    job = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    history, checkpoint = run / "history.csv", run / "checkpoint.pt"
    deadline, started = time.monotonic() + 120, False
    while time.monotonic() < deadline and not started:  # a checkpoint of this job, not the old one
        started = checkpoint.exists() and checkpoint.stat().st_mtime > launched and history.exists()
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGTERM)
    job.wait(timeout=60)
    assert started and not (run / "model.pt").exists() and checkpoint.exists()
    before = history.read_text().splitlines()
    assert 2 <= len(before) < 31

    rc, out = snakemake("--cores", "1", workdir=tiny, configfile=config, targets=[target])
    assert rc == 0, out[-3000:]
    after = history.read_text().splitlines()
    assert len(after) == 31 and after[: len(before)] == before  # same wall-clock seconds: resumed
    assert (run / "model.pt").exists()
    log = tiny / target_dir.replace("results/train", "results/logs/fit").replace("/seed0", "/seed0.log")
    assert "stale checkpoint" not in log.read_text()
