"""Helpers of ``benchmarks/gpu_check.sh``: the reduced Rotating MNIST config, the packing
measurement (K trainings at once on one GPU) and the summary with the timing table (and the
precision and compile tables of :mod:`benchmarks.precision`).

    python -m benchmarks.gpu_check config  --out X.yaml --epochs 10 --device cuda [--toy]   # prints the
        # path of the packing model's YAML in the workflow (trainings are named by content)
    python -m benchmarks.gpu_check packing --data D.h5 --model M.yaml --device cuda --ks 1 4 8 --work W --out P.csv
    python -m benchmarks.gpu_check summary --work DIR --out OUT.md
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
EXPERIMENTS = ("rotating_mnist", "rotating_mnist_basis")
PACKING_MODEL = "olmm_elbo"  # the model the packing stage trains K times


# -- the reduced config ------------------------------------------------------------------------
def reduced_config(epochs: int, device: str, toy: bool) -> dict:
    """config/paper.yaml restricted to the Rotating MNIST experiments, ``epochs`` epochs (no early
    stopping: patience off), on ``device``. ``toy``: 12 digits, one seed, two sweep values (the CPU
    dry mode of gpu_check.sh)."""
    config = yaml.safe_load(PAPER.read_text())
    config["device"] = device
    config["training"].update(epochs=epochs, patience=0)
    config["datasets"] = {"rotating_mnist": config["datasets"]["rotating_mnist"]}
    config["experiments"] = {name: config["experiments"][name] for name in EXPERIMENTS}
    if toy:
        config["datasets"]["rotating_mnist"]["options"].update({"instances": 12, "test-fraction": 0.25})
        config["training"]["nll_samples"] = 4
        for exp in config["experiments"].values():
            exp["seeds"] = 1
            if "sweep" in exp:
                exp["sweep"]["values"] = exp["sweep"]["values"][:2]
            for fig in exp.get("figures", {}).values():
                if "subjects" in fig:
                    fig["subjects"] = min(fig["subjects"], 2)
    return config


# -- packing -----------------------------------------------------------------------------------
def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def packing(python: str, data: str, model: str, device: str, ks: list[int], work: Path,
            epochs: int) -> list[dict]:
    """For each K: K copies of ``lmmvae fit`` (seeds 0..K-1) started together on ``device``; wall
    seconds, the median seconds of an epoch inside each process (after its first epoch), and the
    aggregate throughput (K / that median, epochs per second)."""
    rows = []
    for k in ks:
        runs = [work / f"k{k}" / f"seed{i}" for i in range(k)]
        start = time.perf_counter()
        procs = [subprocess.Popen([python, "-m", "lmmvae", "fit", "--data", data, "--model", model,
                                   "--seed", str(i), "--out", str(run), "--device", device, "--epochs", str(epochs),
                                   "--quiet"],
                                  stdout=subprocess.DEVNULL, stderr=open(work / f"k{k}_seed{i}.log", "w"))
                 for i, run in enumerate(runs)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        times = [float(r["seconds"]) for run in runs for r in read_history(run / "history.csv")[1:]]
        median = statistics.median(times) if times else float("nan")
        rows.append({"k": k, "failed": sum(c != 0 for c in codes), "wall_s": round(wall, 2),
                     "epoch_s_median": round(median, 4), "epochs_per_s": round(k / median, 3) if times else "",
                     "epochs_timed": len(times)})
        print(rows[-1], flush=True)
    return rows


# -- summary -----------------------------------------------------------------------------------
def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def training_models(config: Path) -> dict[str, list[str]]:
    """Training name -> the models of ``config`` it trains (the workflow names a training by its
    model YAML's content, :mod:`lmmvae.reporting.trainings`; identical models share one)."""
    from lmmvae.reporting.experiments import load_plan

    plan = load_plan(yaml.safe_load(config.read_text()), SCHEMA)
    found: dict[str, list[str]] = defaultdict(list)
    for (_, model), name in plan.training_names.items():
        found[name].append(model)
    return dict(found)


def epoch_table(results: Path, models: dict[str, list[str]] | None = None) -> list[dict]:
    """Per Rotating MNIST training of the workflow stage (``models``: the config's models it stands
    for): runs finished, epochs run, median seconds of an epoch (first epoch excluded: CUDA
    start-up), fit job wall seconds (Snakemake benchmark)."""
    models = models or {}
    per_model: dict[str, dict] = defaultdict(lambda: {"runs": 0, "finished": 0, "epochs": [], "fit_s": []})
    for history in sorted((results / "train").glob("*/*/seed*/history.csv")):
        model = history.parent.parent.name
        entry = per_model[model]
        entry["runs"] += 1
        entry["finished"] += (history.parent / "model.pt").exists()
        entry["epochs"] += [float(r["seconds"]) for r in read_history(history)[1:]]
    for tsv in (results / "benchmarks" / "fit").glob("*/*/seed*.tsv"):
        with open(tsv, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                per_model[tsv.parent.name]["fit_s"].append(float(row["s"]))
    rows = []
    for training, e in sorted(per_model.items()):
        names = models.get(training, [training])
        rows.append({"model": ", ".join(names), "models": names, "training": training, "runs": e["runs"], "finished": e["finished"],
                     "epochs timed": len(e["epochs"]),
                     "s / epoch (median)": f"{statistics.median(e['epochs']):.3g}" if e["epochs"] else "",
                     "fit job s (median)": f"{statistics.median(e['fit_s']):.3g}" if e["fit_s"] else ""})
    return rows


def summary(work: Path) -> str:
    parts = ["# GPU check", ""]
    info = work / "device.txt"
    if info.exists():
        parts += ["```", info.read_text().strip(), "```", ""]
    timing = work / "timing.tsv"
    if timing.exists():
        with open(timing, newline="") as f:
            stages = list(csv.DictReader(f, delimiter="\t"))
        parts += ["## Stages", "", markdown(stages, ["stage", "status", "seconds", "budget_s", "command"]), ""]
    bench = work / "BENCHMARKS.cuda.md"
    if bench.exists():
        text = bench.read_text()
        text = text[text.find("<!-- BEGIN"):] if "<!-- BEGIN" in text else text
        parts += ["## epoch_cost (paste into BENCHMARKS.md's cuda block)", "", text.strip(), ""]
    for name, title in (("precision", "float32 against bfloat16 (`precision:`)"),
                        ("compile", "torch.compile (`compile: true`; first epoch = compilation)")):
        table = work / f"{name}.md"
        if table.exists():
            parts += [f"## {title}: oLMM-VAE, Health MNIST", "", table.read_text().strip(), ""]
    syncs = work / "logs" / "tests.log"
    if syncs.exists():
        found = [ln for ln in syncs.read_text().splitlines() if ln.startswith("host synchronisations")]
        tail = syncs.read_text().strip().splitlines()[-1:]
        parts += ["## CUDA tests", "", *[f"- {ln}" for ln in found + tail], ""]
    pack = work / "packing.csv"
    if pack.exists():
        with open(pack, newline="") as f:
            rows = list(csv.DictReader(f))
        parts += ["## Several trainings on one GPU (Rotating MNIST oLMM-VAE, same model K times)", "",
                  markdown(rows, list(rows[0]) if rows else []), "",
                  "epochs_per_s = K / median epoch seconds inside a process: the aggregate training rate; "
                  "it stops rising where K is too many for the GPU or the CPU cores.", ""]
    results = work / "rotating" / "results"
    if results.exists():
        rows = epoch_table(results, training_models(work / "rotating.yaml"))
        tables = sorted((results / "tables").glob("*.md"))
        parts += ["## Rotating MNIST experiments of config/paper.yaml, reduced epochs", "",
                  f"Config: `{work / 'rotating.yaml'}` (epochs as given to gpu_check.sh, no early stopping).", "",
                  markdown(rows, ["model", "runs", "finished", "epochs timed", "s / epoch (median)",
                                  "fit job s (median)"]), ""]
        for table in tables:
            parts += [f"### {table.stem}", "", table.read_text().strip(), ""]
        parts += estimate(rows)
    return "\n".join(parts) + "\n"


def estimate(rows: list[dict]) -> list[str]:
    """Wall time of config/paper.yaml's Rotating MNIST trainings on this GPU, from the measured
    epoch times: sum over runs of epochs x seconds per epoch, divided by the trainings run at once."""
    from lmmvae.reporting.experiments import load_plan

    plan = load_plan(yaml.safe_load(PAPER.read_text()), SCHEMA)
    measured = {model: float(r["s / epoch (median)"]) for r in rows if r["s / epoch (median)"]
                for model in r["models"]}
    trainings = [t for t in plan.trainings if t.dataset == "rotating_mnist"]  # identical models train once
    known = [next(measured[m] for m in models if m in measured) for models in
             (plan.sharing(t.dataset, t.name) for t in trainings) if any(m in measured for m in models)]
    if not known:
        return []
    max_epochs = plan.model("rotating_mnist", plan.sharing("rotating_mnist", trainings[0].name)[0]).config["epochs"]
    seconds = sum(known)  # one epoch of every measured training, as measured (with K jobs sharing the GPU)
    return ["## Estimate (Rotating MNIST part of config/paper.yaml)", "",
            f"{len(known)} of {len(trainings)} trainings have a measured epoch time; one epoch of each, as "
            f"measured with the workflow stage's concurrency, sums to {seconds:.1f} s of job time. "
            f"With E epochs per run and K trainings at once: wall ≈ E × {seconds:.1f} s / K, e.g. "
            f"E = 100: {100 * seconds / 3600 / 8:.2f} h at K = 8; E = {max_epochs} (the cap): "
            f"{max_epochs * seconds / 3600 / 8:.2f} h at K = 8. Epoch times were measured while K jobs "
            "shared the GPU, so dividing by K assumes they ran concurrently the whole time.", ""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("config")
    c.add_argument("--out", required=True)
    c.add_argument("--epochs", type=int, required=True)
    c.add_argument("--device", default="cuda")
    c.add_argument("--toy", action="store_true")
    p = sub.add_parser("packing")
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    s = sub.add_parser("summary")
    s.add_argument("--work", required=True)
    s.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "config":
        Path(args.out).write_text(yaml.safe_dump(reduced_config(args.epochs, args.device, args.toy), sort_keys=False))
        name = {m: t for t, ms in training_models(Path(args.out)).items() for m in ms}
        print(f"results/models/rotating_mnist/{name[PACKING_MODEL]}.yaml")  # the packing stage's model
    elif args.command == "packing":
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        rows = packing(sys.executable, args.data, args.model, args.device, args.ks, work, args.epochs)
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        if any(r["failed"] for r in rows):
            sys.exit(f"packing: some trainings failed; logs in {work}")
    else:
        text = summary(Path(args.work))
        Path(args.out).write_text(text)
        print(text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
