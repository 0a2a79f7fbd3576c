"""Accuracy benchmark: future-prediction MSE on data drawn from exactly an LMM in a 2-d latent space.

    .venv/bin/python -m benchmarks.accuracy [--seeds 3] [--subjects 100] [--latent-dim 2|3]
        [--decoder tanh32|elu64x2] [--out DIR] [--quick]

Data: :func:`benchmarks.simulate_lmm.simulate_lmm` (random intercepts and slopes per subject, a
shared ``sin``/``cos`` time effect, a binary covariate, a fixed random MLP decoder, noise 0.1); the
test rows are the last 3 visits of every other subject. ``--latent-dim`` and ``--decoder`` pick the
generating latent dimension and decoder (:mod:`benchmarks.simulate_lmm`; the LMM-VAE rows are fitted
with the same latent dimension, ``DESIGN`` contains the latent model at either). Models, each scored by the MSE of its
prediction of the test rows from their covariates (SPEC 2.4, 3.4, 6):

* oLMM-VAE and sLMM-VAE, each trained by the ELBO and by GSNN, and the VAE, through the public API
  ``lmmvae.fit(data, variant=…, objective=…, design=DESIGN, latent_dim=L, network="mlp")`` with the
  library's defaults for everything else (learning rate, schedule, epochs, early stopping, priors):
  rerunning this after a change of defaults measures the new defaults;
* MixedLM: one linear mixed model per output feature (statsmodels ``MixedLM``, REML), fixed effects
  ``1 + time + fourier(time, 2, period=2) + sex``, random ``(1 + time | id)``, predicting with the
  fixed effects plus the subject's BLUP; the library's ``variant: mixedlm`` when it is registered,
  else statsmodels called here (``--mixedlm``);
* train mean: each feature's mean over training rows;
* truth: the decoder applied to the true latent of the test rows (the noise floor, ≈ 0.1² = 0.01).

The design ``DESIGN`` contains the generating latent model exactly (why: :mod:`benchmarks.simulate_lmm`).
Targets: oLMM-VAE and sLMM-VAE ≤ 0.3 × MixedLM; GSNN within 10 % of the best LMM-VAE.
Every run's ``history.csv`` is drawn as a learning curve (``<out>/curves/*.png``); the table says,
per model, the epoch whose weights were kept (best validation loss) and the epochs run, so a run
whose best epoch is its last (not converged) shows.

Writes ``<out>/runs.csv`` (one row per model × seed), ``<out>/summary.csv``, ``<out>/table.md``,
``<out>/curves/``, ``<out>/runs/`` (run directories) and ``<out>/data/`` (the simulated HDF5 files);
with the default ``--out`` also ``results/benchmarks/accuracy.csv`` (the summary, as every
benchmark of ``make bench``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.simulate_lmm import DECODERS, DESIGN, LATENT_DIM, LATENT_DIMS, simulate_lmm, truth_decoder
from lmmvae.answers.metrics import mse
from lmmvae.data.h5 import LongitudinalData, write_h5
from lmmvae.training.runtime import choose_device

NAME = "accuracy"
DEFAULT_OUT = harness.RESULTS / NAME


@dataclass(frozen=True)
class Model:
    key: str
    label: str
    settings: dict = field(default_factory=dict)  # lmmvae.fit keys; empty for the non-VAE rows
    family: str = "lmmvae"  # lmmvae | vae | reference


MODELS = [
    Model("olmm_elbo", "oLMM-VAE (ELBO)", {"variant": "olmm", "objective": "elbo", "design": DESIGN}),
    Model("olmm_gsnn", "oLMM-VAE (GSNN)", {"variant": "olmm", "objective": "gsnn", "design": DESIGN}),
    Model("slmm_elbo", "sLMM-VAE (ELBO)", {"variant": "slmm", "objective": "elbo", "design": DESIGN}),
    # SPEC 4: under GSNN the subject enters only through the design: DESIGN has (1 + time | id)
    Model("slmm_gsnn", "sLMM-VAE (GSNN)", {"variant": "slmm", "objective": "gsnn", "design": DESIGN}),
    Model("vae", "VAE", {"variant": "vae", "objective": "elbo", "design": "~ 1"}, family="vae"),
    Model("mixedlm", "MixedLM (per feature)", family="reference"),
    Model("train_mean", "train mean (per feature)", family="reference"),
    Model("truth", "truth (noise floor)", family="reference"),
]
TARGET_RATIO = 0.3  # LMM-VAE future MSE ≤ 0.3 × MixedLM
GSNN_SLACK = 0.10  # GSNN within 10 % of the best LMM-VAE


# -- the reference rows -------------------------------------------------------------------------
def fixed_design(time_: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """Fixed effects of the MixedLM rows, the shared part of ``DESIGN`` with an intercept:
    ``1, time, cos πt, sin πt, cos 2πt, sin 2πt, sex`` ([N, 7]; ``fourier(time, 2, period=2)``)."""
    angle = np.pi * time_
    return np.stack([np.ones_like(time_), time_, np.cos(angle), np.sin(angle), np.cos(2 * angle),
                     np.sin(2 * angle), sex.astype(np.float64)], axis=1)


def mixedlm_statsmodels(data: LongitudinalData) -> tuple[np.ndarray, int]:
    """Test-row predictions ``[n_test, D]`` of one statsmodels ``MixedLM`` per feature, fitted (REML)
    on the train split only, and the number of fits that warned of non-convergence.

    Prediction = fixed effects + the subject's BLUP of its random intercept and slope (zero for a
    subject without training rows)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    t, sex, subject = (data.covariates[k].values for k in ("time", "sex", "id"))
    train, test = data.split == 0, data.split == 2
    x = fixed_design(t, sex)  # [N, 7]
    z = np.stack([np.ones_like(t), t], axis=1)  # [N, 2] random intercept and slope
    pred = np.zeros((int(test.sum()), data.n_features))
    warned = 0
    for d in range(data.n_features):
        rows = train & (data.mask[:, d] == 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = sm.MixedLM(data.y[rows, d].astype(np.float64), x[rows], groups=subject[rows],
                             exog_re=z[rows]).fit(reml=True)
        warned += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        blup = fit.random_effects  # {subject code: Series [2]}
        b = np.array([np.asarray(blup[p]) if p in blup else np.zeros(2) for p in subject[test]])  # [n_test, 2]
        pred[:, d] = x[test] @ np.asarray(fit.fe_params) + (z[test] * b).sum(1)
    return pred, warned


def mixedlm_library(data: LongitudinalData, run_dir: Path, seed: int, device: str) -> float:
    """Test MSE of the library's ``variant: mixedlm`` (lmmvae.classical.family), through the public API."""
    import lmmvae

    fitted = lmmvae.fit(data, out=run_dir, seed=seed, variant="mixedlm", design=DESIGN, progress=False,
                        device=device)
    return float(fitted.evaluate(data)["mse_test"])


def mixedlm_registered() -> bool:
    return harness.registered("mixedlm")


# -- one seed -----------------------------------------------------------------------------------
def fit_vae_row(model: Model, data: LongitudinalData, out: Path, seed: int, device: str,
                quick: bool) -> dict:
    """Train one LMM-VAE/VAE row with the library defaults; its test MSE, NLL and convergence."""
    import lmmvae
    from lmmvae.reporting.curves import plot_history, read_history

    run_dir = out / "runs" / f"{model.key}-seed{seed}"
    extra = {"epochs": 2} if quick else {}
    start = time.perf_counter()
    latent_dim = int(data.attrs.get("latent_dim", LATENT_DIM))  # the generating model's
    fitted = lmmvae.fit(data, out=run_dir, seed=seed, latent_dim=latent_dim, network="mlp",
                        progress=False, device=device, **model.settings, **extra)
    seconds = time.perf_counter() - start
    metrics = fitted.evaluate(data)
    history = read_history(run_dir / "history.csv", max_epochs=fitted.config.epochs)
    plot_history(run_dir / "history.csv", out / "curves" / f"{model.key}-seed{seed}.png",
                 title=f"{model.label}, seed {seed}")
    return {"mse_test": float(metrics["mse_test"]), "nll_test": float(metrics.get("nll_test", math.nan)),
            "best_epoch": history["best_epoch"], "epochs_run": history["epochs_run"],
            "max_epochs": fitted.config.epochs, "stopped_early": history["stopped_early"],
            "seconds": seconds}


def run_seed(data: LongitudinalData, seed: int, out: Path, models: list[Model], device: str,
             mixedlm: str, quick: bool) -> list[dict]:
    test = data.split == 2
    scored = data.mask[test] == 1
    rows = []
    for model in models:
        print(f"  seed {seed}: {model.label} …", flush=True)
        row = {"model": model.key, "label": model.label, "seed": seed}
        start = time.perf_counter()
        if model.family in ("lmmvae", "vae"):
            row.update(fit_vae_row(model, data, out, seed, device, quick))
        elif model.key == "mixedlm":
            if mixedlm == "library":
                row["mse_test"] = mixedlm_library(data, out / "runs" / f"mixedlm-seed{seed}", seed, device)
                row["how"] = "lmmvae variant mixedlm"
            else:
                pred, warned = mixedlm_statsmodels(data)
                row.update(mse_test=mse(data.y[test], pred, scored), convergence_warnings=warned,
                           how="statsmodels MixedLM")
            row["seconds"] = time.perf_counter() - start
        elif model.key == "train_mean":
            train = data.split == 0
            mean = (data.y * data.mask)[train].sum(0) / np.maximum(data.mask[train].sum(0), 1)  # [D]
            row["mse_test"] = mse(data.y[test], np.broadcast_to(mean, data.y[test].shape), scored)
        elif model.key == "truth":
            g = truth_decoder(data)
            row["mse_test"] = mse(data.y[test], g(data.latent_truth[test]), scored)
        print(f"    mse_test {row['mse_test']:.4f}", flush=True)
        rows.append(row)
    return rows


# -- summary ------------------------------------------------------------------------------------
def _mean_sd(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict], models: list[Model]) -> list[dict]:
    """One row per model: mean ± sd over seeds, ratio to MixedLM, convergence, target check."""
    by_model = {m.key: [r for r in rows if r["model"] == m.key] for m in models}
    reference, _ = _mean_sd([r["mse_test"] for r in by_model.get("mixedlm", [])])
    summary = []
    for m in models:
        runs = by_model[m.key]
        if not runs:
            continue
        mean, sd = _mean_sd([r["mse_test"] for r in runs])
        nll, _ = _mean_sd([r.get("nll_test", math.nan) for r in runs])
        secs, _ = _mean_sd([r.get("seconds", math.nan) for r in runs])
        out = {"model": m.key, "label": m.label, "seeds": len(runs), "mse_test": mean, "mse_sd": sd,
               "ratio_mixedlm": mean / reference if reference and not math.isnan(reference) else math.nan,
               "nll_test": nll, "seconds": secs}
        if "best_epoch" in runs[0]:
            out["best_epochs"] = " ".join(f"{r['best_epoch']}/{r['epochs_run']}" for r in runs)
            out["max_epochs"] = runs[0]["max_epochs"]
            out["stopped_early"] = sum(bool(r["stopped_early"]) for r in runs)
            out["best_is_last"] = sum(r["best_epoch"] == r["epochs_run"] for r in runs)
        summary.append(out)
    best = min((s["mse_test"] for s in summary if s["model"].startswith(("olmm", "slmm"))), default=math.nan)
    for s in summary:
        if s["model"] in ("olmm_elbo", "slmm_elbo"):
            s["target"] = f"≤ {TARGET_RATIO} × MixedLM: " + ("met" if s["ratio_mixedlm"] <= TARGET_RATIO else "missed")
        elif s["model"].endswith("_gsnn"):
            s["target"] = f"≤ {1 + GSNN_SLACK:.1f} × best: " + ("met" if s["mse_test"] <= (1 + GSNN_SLACK) * best else "missed")
    return summary


COLUMNS = [
    harness.Column("label", "model"),
    harness.Column("mse_test", "future MSE (test)", "{:.4f}"),
    harness.Column("mse_sd", "± sd", "{:.4f}"),
    harness.Column("ratio_mixedlm", "÷ MixedLM", "{:.2f}"),
    harness.Column("nll_test", "NLL (test)", "{:.2f}"),
    harness.Column("best_epochs", "best epoch / epochs run, per seed"),
    harness.Column("max_epochs", "budget"),
    harness.Column("stopped_early", "stopped early"),
    harness.Column("seconds", "s per run", "{:.0f}"),
    harness.Column("target", "target"),
]


# -- command line -------------------------------------------------------------------------------
def main(argv=None) -> harness.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="toy sizes, 2 epochs, 1 seed: a smoke run (seconds)")
    parser.add_argument("--seeds", type=int, default=3, help="data and training seeds 0..N-1 (default 3)")
    parser.add_argument("--subjects", type=int, default=100, help="simulated subjects (default 100)")
    parser.add_argument("--visits", type=int, default=10, help="visits per subject (default 10)")
    parser.add_argument("--features", type=int, default=20, help="output dimension D (default 20)")
    parser.add_argument("--latent-dim", type=int, choices=LATENT_DIMS, default=LATENT_DIM,
                        help=f"latent dimension of the generating LMM and of the fitted models (default {LATENT_DIM})")
    parser.add_argument("--decoder", choices=DECODERS, default=DECODERS[0],
                        help=f"the generating decoder (default {DECODERS[0]}; benchmarks/simulate_lmm.py)")
    parser.add_argument("--models", nargs="+", choices=[m.key for m in MODELS], default=[m.key for m in MODELS])
    parser.add_argument("--mixedlm", choices=("auto", "library", "statsmodels"), default="auto",
                        help="MixedLM row: the library's variant mixedlm if registered (auto), or statsmodels here")
    parser.add_argument("--out", default=None, help=f"output directory (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    harness.apply_threads(args.threads)
    device = choose_device(args.device)
    if args.quick:
        args.seeds, args.subjects, args.visits, args.features = 1, 12, 6, 5
    mixedlm = args.mixedlm
    if mixedlm == "auto":
        mixedlm = "library" if mixedlm_registered() else "statsmodels"
    out = Path(args.out) if args.out else DEFAULT_OUT
    models = [m for m in MODELS if m.key in args.models]
    command = ("python -m benchmarks.accuracy " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    rows = []
    for seed in range(args.seeds):
        data = simulate_lmm(n_subjects=args.subjects, n_visits=args.visits, data_dim=args.features, seed=seed,
                            latent_dim=args.latent_dim, decoder_kind=args.decoder)
        write_h5(data, out / "data" / f"simulated_lmm-seed{seed}.h5")
        rows += run_seed(data, seed, out, models, args.device, mixedlm, args.quick)
        harness.write_csv(rows, out / "runs.csv")  # after every seed: a killed run keeps its seeds
    summary = summarise(rows, models)
    table = harness.markdown_table(summary, COLUMNS)
    notes = [f"{args.subjects} subjects × {args.visits} visits, D = {args.features}, latent dimension {args.latent_dim}, "
             f"decoder {args.decoder}, noise 0.1, seeds 0..{args.seeds - 1}; "
             f"test: last 3 visits of every other subject. LMM-VAE design `{DESIGN}`, latent_dim {args.latent_dim}, network mlp, "
             "library defaults otherwise" + (" (--quick: 2 epochs)" if args.quick else "") + ".",
             f"MixedLM row: {'the library variant mixedlm' if mixedlm == 'library' else 'statsmodels MixedLM per feature (REML), fixed 1 + time + fourier(time, 2, period=2) + sex, random (1 + time | id)'}.",
             "best epoch / epochs run: the epoch of least validation loss (the weights kept) and the epochs "
             "trained; a best epoch equal to the epochs run means the run had not converged.",
             f"Learning curves: `{out / 'curves'}/<model>-seed<N>.png`."]
    result = harness.Result(NAME, summary, table, command, harness.describe_machine(device), notes)
    harness.write_csv(summary, out / "summary.csv")
    (out / "table.md").write_text(result.markdown() + "\n")
    if args.out is None:
        harness.write_csv(summary, harness.csv_path(NAME, device, None))
    print(result.markdown())
    print(f"written: {out}/runs.csv, summary.csv, table.md, curves/")
    return result


if __name__ == "__main__":
    main()
