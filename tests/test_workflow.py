"""The Snakemake workflow: the tiny .test config run for real (every rule type), the HTML
report, lint, a dry run of the paper config listing every job, which jobs rerun after editing one
model, identical models trained once, a killed training job resuming from its checkpoint, readable
config errors, the profiles.

The real run takes about a minute on 2 cores; the other tests reuse its results directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lmmvae.reporting.experiments import load_plan
from lmmvae.reporting.trainings import training_yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = REPO / ".test" / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

pytestmark = pytest.mark.slow


def snakemake(*args: str, workdir: Path, configfile: Path, targets=(), timeout=600):
    """Run Snakemake from the repository root on ``workdir``; ``(returncode, stdout + stderr)``."""
    cmd = [SNAKEMAKE, *targets, "--directory", str(workdir), *args, "--configfile", str(configfile)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def job_counts(output: str) -> Counter:
    """The 'Job stats' table of a (dry) run as rule -> number of jobs."""
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = Counter()
    for line in block.splitlines()[3:]:
        rule, count = line.split()
        if rule != "total":
            counts[rule] = int(count)
    return counts


def workflow_rules() -> set[str]:
    text = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    return set(re.findall(r"^(?:rule|use rule \w+ as) (\w+)", text, flags=re.M))


def edited_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load(TINY.read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def plan_of(configfile: Path):
    return load_plan(yaml.safe_load(configfile.read_text()), SCHEMA)


def training_dir(configfile: Path, dataset: str, model: str, seed: int) -> str:
    """``results/train/<dataset>/<training>/seed<seed>``: where ``model``'s run of ``seed`` lives."""
    name = plan_of(configfile).training_names[(dataset, model)]
    return f"results/train/{dataset}/{name}/seed{seed}"


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
