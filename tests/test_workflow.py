"""The Snakemake workflow (issue 5): the tiny .test config run for real (every rule type), the HTML
report, lint, a dry run of the paper config listing every job, which jobs rerun after editing one
model, a killed training job resuming from its checkpoint, readable config errors, the profiles.

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
import tomllib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lmmvae.reporting.experiments import load_plan

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
    assert set(gsnn["metric"]) == {"mse_test", "nll_test"}  # no imputation/MCC without q(z|y)
    # every neural run says how its training ended (2-epoch budget: every run hits it)
    neural = metrics[~metrics["variant"].isin(["mixedlm", "mean"])]
    assert (neural["epoch_budget"] == 2).all() and (neural["epochs_run"] == 2).all()
    assert (neural["stopped_early"] == False).all() and neural["best_epoch"].between(1, 2).all()  # noqa: E712

    for experiment in plan.experiments:
        md = (tiny / "results" / "tables" / f"{experiment}.md").read_text()
        assert "**" in md and "| Model |" in md
        assert "| Stopped early |" in md and "in all 0 stopped early" in md
        assert r"\textbf" in (tiny / "results" / "tables" / f"{experiment}.tex").read_text()
    figures = sorted((tiny / "results" / "figures").rglob("*.png"))
    assert len(figures) == sum(len(e.figures) for e in plan.experiments.values()) == 5
    for png in figures:
        assert png.read_bytes()[:4] == b"\x89PNG"
        assert png.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    assert not list((tiny / "results").rglob(".*.tmp"))


def test_training_job_writes_the_metrics_of_a_separate_evaluation(tiny, tmp_path):
    """`fit --evaluate-out` evaluates in the training process: the same JSON, to the byte, as
    `lmmvae evaluate` of the saved run (a reloaded model, a fresh process)."""
    run = "results/train/clinical_trial/olmm_latent_dim2/seed1"
    out = tmp_path / "metrics.json"
    done = subprocess.run([sys.executable, "-m", "lmmvae", "evaluate", "--run", run, "--data",
                           "results/data/clinical_trial.h5", "--out", str(out)],
                          cwd=tiny, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    written = tiny / "results/eval/clinical_trial/olmm_latent_dim2/seed1/metrics.json"
    assert out.read_text() == written.read_text()
    result = json.loads(out.read_text())
    assert set(result["metrics"]) == {"mse_test", "nll_test"}
    history = pd.read_csv(tiny / run / "history.csv")
    assert (result["epochs_run"], result["epoch_budget"], result["stopped_early"]) == (len(history), 2, False)
    assert result["best_epoch"] == history["epoch"][history["val_loss"].idxmin()]


def test_report_jobs_import_no_torch(tiny):
    """The report jobs rerun with Python's import log on: none of them imports torch (a few
    seconds per job otherwise, issue 14); the trajectories figure draws from the training job's
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


def test_editing_one_model_reruns_only_its_training_evaluation_and_the_reports(tiny, tmp_path):
    config = edited_config(
        tmp_path, lambda c: c["experiments"]["identifiability_trial"]["models"]["olmm"].update(lr=0.01)
    )
    rc, out = snakemake("--dry-run", workdir=tiny, configfile=config)
    assert rc == 0, out[-3000:]
    # the model's YAML, its two seeds' training (+ evaluation, same job), their MCC, then
    # metrics.csv and everything drawn from it; no data, no other model, no figure drawn from
    # predictions
    assert job_counts(out) == {"model_yaml": 1, "fit": 2, "mcc_seeds": 1,
                               "aggregate": 1, "table": 4, "figure_metrics": 3, "all": 1}
    fits = re.findall(r"rule fit:\n(?:.*\n)*?\s+wildcards: (.*)", out)
    assert fits and all("model=olmm_latent_dim2" in w for w in fits)
    assert "Params have changed since last execution" in out


def test_lint_is_clean():
    rc, out = snakemake("--lint", workdir=REPO, configfile=REPO / "config" / "default.yaml")
    assert rc == 0 and "Congratulations" in out, out[-3000:]


def test_paper_dry_run_lists_every_job_of_the_papers_experiments(tmp_path):
    rc, out = snakemake("--dry-run", workdir=tmp_path, configfile=REPO / "config" / "paper.yaml")
    assert rc == 0, out[-3000:]
    plan = load_plan(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()), SCHEMA)
    counts = job_counts(out)
    # each run evaluates itself; 275 neural trainings (5 seeds, 4 on Rotating MNIST) and 4 classical
    # rows, fitted once each (deterministic: one seed gives them all)
    assert counts["fit"] + counts["fit_predictions"] == len(plan.runs) == 275 + 4
    classical = [r for r in plan.runs if plan.model(r.dataset, r.model).config["variant"] in ("mixedlm", "mean")]
    assert len(classical) == 4 and {r.seed for r in classical} == {0}
    drawn = {(e.dataset, f["model"], f["seed"]) for e in plan.experiments.values()
             for f in e.figures.values() if f["kind"] == "trajectories"}  # runs whose predictions are drawn
    assert "evaluate" not in counts and counts["fit_predictions"] == len(drawn) >= 1
    assert counts["mcc_seeds"] == len(plan.seed_pairs) == 120
    assert counts["model_yaml"] == len(plan.models)
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
    assert len(fit_jobs) == 279 and sum("gpu=1" in r for r in fit_jobs) == 275
    assert sum("gpu=0" in r for r in fit_jobs) == 4
    assert out.count("--device cuda") == 279


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
    run = tiny / "results" / "train" / "physionet" / "olmm_gsnn" / "seed0"
    target = "results/train/physionet/olmm_gsnn/seed0/model.pt"
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
    assert "stale checkpoint" not in (tiny / "results/logs/fit/physionet/olmm_gsnn/seed0.log").read_text()
