"""Torch threads by model size: wall time of one `lmmvae fit` at 1 and 2 intra-op threads, alone
and beside another CPU-bound process, for a tabular model and an image model.

    .venv/bin/python -m benchmarks.threads [--epochs 60] [--repeats 2] [--quick]

Models: the README quick start's oLMM-VAE on examples/visits.csv (a dense network, 5 features), and
oLMM-VAE on a small Health MNIST (the paper's conv network, 36×36 images). Each fit runs in its own
process with `--threads N` for a fixed number of epochs (no early stopping), so the seconds compare
like with like. "busy" runs one more process that spins on a core for the whole fit, as a second job
on a 2-core laptop would. The choice the library makes (lmmvae.training.runtime.default_threads) is the
fastest count under load for each kind, unless the quiet machine loses more than it wins.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Column

NAME = "threads"
ROOT = Path(__file__).resolve().parents[1]
SPIN = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"
COLUMNS = [Column("model", "model"), Column("load", "machine"), Column("threads", "threads"),
           Column("seconds", "s (median)", "{:.1f}"), Column("per_epoch_ms", "ms / epoch", "{:.1f}"),
           Column("ratio", "× 1 thread", "{:.2f}")]


def lmmvae(*args: str, env: dict | None = None) -> None:
    subprocess.run([sys.executable, "-m", "lmmvae", *args], cwd=ROOT, check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def build_data(work: Path) -> dict[str, tuple[Path, Path]]:
    """The two data files and model YAMLs."""
    visits, hm = work / "visits.h5", work / "hm.h5"
    lmmvae("data", "from-table", "--table", "examples/visits.csv", "--subject", "patient", "--time", "month",
           "--features", "crp,hb,alt,glucose,sbp", "--covariates", "sex,arm,age", "--test-after", "5",
           "--out", str(visits))
    lmmvae("data", "health-mnist", "--instances", "40", "--timepoints", "10", "--train-timepoints", "3",
           "--out", str(hm), "--quiet")
    tabular = work / "tabular.yaml"
    tabular.write_text('variant: olmm\ndesign: "~ month + sex + arm + (1 | patient)"\nsubject: patient\n'
                       "latent_dim: 2\nlr: 1e-2\npatience: 0\n")
    image = work / "image.yaml"
    image.write_text('variant: olmm\ndesign: "~ age + sex + (1 | id)"\nlatent_dim: 8\nnetwork: health_mnist\n'
                     "likelihood: bernoulli\npatience: 0\n")
    return {"tabular (visits, dense)": (visits, tabular), "image (Health MNIST, conv)": (hm, image)}


def time_fit(data: Path, model: Path, threads: int, epochs: int, work: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=work))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    start = time.perf_counter()
    lmmvae("fit", "--data", str(data), "--model", str(model), "--epochs", str(epochs), "--threads", str(threads),
           "--out", str(out / "run"), "--quiet", env=env)
    return time.perf_counter() - start


def measure(epochs: int, repeats: int, work: Path) -> list[dict]:
    rows = []
    for label, (data, model) in build_data(work).items():
        for load in ("quiet", "busy"):
            spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if load == "busy" else None
            try:
                seconds = {t: sorted(time_fit(data, model, t, epochs, work) for _ in range(repeats))[repeats // 2]
                           for t in (1, 2)}
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
            for t, s in seconds.items():
                rows.append({"model": label, "load": load, "threads": t, "seconds": s,
                             "per_epoch_ms": 1000 * s / epochs, "ratio": s / seconds[1], "epochs": epochs})
    return rows


def main(argv=None) -> harness.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="epochs per fit (default 60)")
    parser.add_argument("--repeats", type=int, default=2, help="fits per cell, median kept (default 2)")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 repeat: a smoke run")
    parser.add_argument("--out", default=None, help="CSV path (default results/benchmarks/threads.csv)")
    args = parser.parse_args(argv)
    epochs, repeats = (2, 1) if args.quick else (args.epochs, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(epochs, repeats, Path(tmp))
    command = "python -m benchmarks.threads " + " ".join(argv if argv is not None else sys.argv[1:])
    notes = ["Wall time of the whole `lmmvae fit` process (start-up included), median of the repeats; "
             "busy: one other process spinning on a core throughout."]
    import torch

    result = harness.Result(NAME, rows, harness.markdown_table(rows, COLUMNS), command.strip(),
                            harness.describe_machine(torch.device("cpu")), notes)
    print(result.markdown())
    print(f"CSV: {harness.write_csv(rows, harness.csv_path(NAME, torch.device('cpu'), args.out))}")
    return result


if __name__ == "__main__":
    main()
