"""Helpers of the workflow tests (tests/test_workflow.py, tests/test_workflow_dry.py): Snakemake run
from the repository root, its job table, the tiny config edited, the plan of a config file."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from lmmvae.reporting.experiments import load_plan

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TINY = REPO / ".test" / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"



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
