"""A real SLURM run (issue 13): the tiny ``.test`` config through ``--workflow-profile profiles/slurm``
on a live cluster. ``make test-slurm`` starts a throw-away single-node cluster
(``workflow/scripts/local_slurm.sh``) and runs this file inside it with ``LMMVAE_TEST_SLURM=1``.
Without that opt-in (so ``make test`` never submits jobs, not even on a real cluster's login node)
the live tests are skipped. The dry runs of the packing profiles (several trainings per GPU) run
everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lmmvae.reporting.experiments import load_plan

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = REPO / ".test" / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def cluster_reachable() -> bool:
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return ping.returncode == 0 and "UP" in ping.stdout


pytestmark = pytest.mark.slow
live = pytest.mark.skipif(os.environ.get("LMMVAE_TEST_SLURM") != "1",
                          reason="submits SLURM jobs: only with LMMVAE_TEST_SLURM=1 (`make test-slurm`)")


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> tuple[Path, str]:
    pytest.importorskip("snakemake_executor_plugin_slurm")
    assert cluster_reachable(), "LMMVAE_TEST_SLURM=1 but no SLURM controller answers `scontrol ping`"
    workdir = tmp_path_factory.mktemp("slurm")
    # Accounting is off on the test cluster, so job states come from squeue (MinJobAge=3600 keeps
    # finished jobs visible); the first status check after 2 s instead of 40 s. Everything else,
    # resources included, is the profile's.
    cmd = [SNAKEMAKE, "--directory", str(workdir), "--workflow-profile", "profiles/slurm",
           "--configfile", str(TINY), "--slurm-status-command", "squeue",
           "--slurm-init-seconds-before-status-checks", "2"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    out = done.stdout + done.stderr
    (workdir / "run.log").write_text(out)
    assert done.returncode == 0, out[-5000:]
    return workdir, out


@live
def test_every_cluster_job_was_submitted_with_sbatch_and_completed(slurm_run):
    _, log = slurm_run
    assert "Using workflow specific profile profiles/slurm" in log
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    cluster_rules = re.findall(r"^rule (\w+):", log, flags=re.M)  # `localrule` blocks run here
    assert submitted and len(submitted) == len(set(submitted)) == len(cluster_rules)
    assert {"fit", "data"} <= set(cluster_rules)
    # the cluster's own record: each of those job ids ran on it and completed
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T"],
                           capture_output=True, text=True, check=True).stdout
    states = dict(line.split("|") for line in queue.split())
    assert {job: states.get(job) for job in submitted} == {job: "COMPLETED" for job in submitted}


@live
def test_results_of_the_slurm_run_are_complete(slurm_run):
    workdir, _ = slurm_run
    metrics = pd.read_csv(workdir / "results" / "metrics.csv")
    plan = load_plan(yaml.safe_load(TINY.read_text()), SCHEMA)
    assert set(zip(metrics["dataset"], metrics["model"], metrics["seed"])) == \
        {(r.dataset, r.model, r.seed) for r in plan.runs}
    assert metrics["value"].notna().all()
    for experiment in plan.experiments:
        assert "| Model |" in (workdir / "results" / "tables" / f"{experiment}.md").read_text()
    for run in map(plan.training, plan.runs):  # models with identical settings share a training
        assert (workdir / "results" / "train" / run.dataset / run.name / f"seed{run.seed}" / "model.pt").exists()


def dry_run(profile: str, tmp_path: Path) -> str:
    cmd = [SNAKEMAKE, "--dry-run", "--directory", str(tmp_path), "--workflow-profile", profile,
           "--configfile", str(REPO / "config" / "paper.yaml")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert f"Using workflow specific profile {profile}" in out
    return out


def test_slurm_packed_profile_puts_four_trainings_on_one_gpu_per_submission(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    out = dry_run("profiles/slurm-packed", tmp_path)
    stats = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]  # the dry run prints the table twice
    n_fit = sum(int(n) for n in re.findall(r"^fit(?:_predictions)?\s+(\d+)$", stats, flags=re.M))
    groups = out.split("Group job gpu_pack")[1:]
    assert len(groups) == -(-n_fit // 4)  # ceil: every training is in a group of at most 4
    sizes = [len(re.findall(r"rule fit(?:_predictions)?:", g)) for g in groups]
    assert sum(sizes) == n_fit and max(sizes) == 4
    fit = re.findall(r"rule fit(?:_predictions)?:\n(?:.*\n)*?\s+resources: (.*)", out)
    # the GPU asked for once per group (a string resource), never summed into --gpus=4
    assert len(fit) == n_fit and all("gpu=0" in r and "gres=gpu:1" in r for r in fit)


def test_gpu_profile_lets_eight_trainings_share_the_gpu(tmp_path):
    out = dry_run("profiles/gpu", tmp_path)
    config = yaml.safe_load((REPO / "workflow" / "profiles" / "gpu" / "config.yaml").read_text())
    assert config["resources"] == ["gpu=8"] and config["set-threads"] == {"fit": 1, "fit_predictions": 1}
    fit = re.findall(r"rule fit(?:_predictions)?:\n(?:.*\n)*?\s+resources: (.*)", out)
    # each neural training takes one of the 8 slots; the 4 classical rows (no GPU) take none
    assert fit and sum("gpu=1" in r for r in fit) == len(fit) - 4 and sum("gpu=0" in r for r in fit) == 4
