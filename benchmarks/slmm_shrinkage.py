"""sLMM-VAE's random-effect rows of A, point (fixed MAP penalty) vs Gaussian q with learned τ_r
(docs/model.md 3.1): validation and future MSE, 90 % interval coverage of the future visits, and
the spread of the subjects' fitted latent slopes, on data with random intercepts only or with
real random slopes (the simulation of benchmarks/simulate_lmm.py with its slope std set).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.slmm_shrinkage --seeds 0 1 2 --out FILE.csv
"""

from __future__ import annotations

import argparse
import time as clock

import numpy as np
import pandas as pd

import lmmvae
from benchmarks.simulate_lmm import DESIGN, GAMMA, RANDOM_SD, decoder, shared_effect
from lmmvae.data.h5 import Covariate, LongitudinalData

SETTINGS = {"intercepts_only": 0.0, "slopes": RANDOM_SD}  # std of the true random slopes
RECIPE = dict(variant="slmm", objective="elbo", design=DESIGN, latent_dim=2, lr=1e-2, progress=False)


def simulate(slope_sd: float, seed: int, n_subjects: int = 60, n_visits: int = 10, n_future: int = 3,
             data_dim: int = 20, noise: float = 0.1) -> tuple[LongitudinalData, np.ndarray]:
    """benchmarks/simulate_lmm.py's generator with the random slopes' std ``slope_sd``: the data
    and the true slopes [P, L]."""
    g = decoder(data_dim)
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), n_visits)
    step = np.tile(np.arange(n_visits), n_subjects)
    jitter = rng.uniform(-0.25, 0.25, size=(n_subjects, n_visits)) / (n_visits - 1)
    t = np.sort(np.clip(np.arange(n_visits) / (n_visits - 1) + jitter, 0.0, 1.0), axis=1).ravel()
    sex = rng.integers(0, 2, size=n_subjects)
    intercepts = rng.normal(0.0, RANDOM_SD, size=(n_subjects, 2))
    slopes = rng.normal(0.0, slope_sd, size=(n_subjects, 2))
    z = shared_effect(t, 2) + sex[subject, None] * GAMMA[:2] + intercepts[subject] + slopes[subject] * t[:, None]
    clean = g(z)
    y = clean + noise * rng.normal(size=clean.shape)
    split = np.where(rng.random(len(z)) < 0.15, 1, 0).astype(np.uint8)
    split[(subject % 2 == 0) & (step >= n_visits - n_future)] = 2
    data = LongitudinalData(
        y=y, mask=np.ones(y.shape, dtype=np.uint8), split=split,
        covariates={"time": Covariate(t, "time"), "sex": Covariate(sex[subject], "binary"),
                    "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(n_subjects)])},
        y_full=clean, latent_truth=z, attrs={"name": "slmm_shrinkage"})
    return data, slopes


def frame(data: LongitudinalData, rows: np.ndarray) -> pd.DataFrame:
    ids = np.asarray(data.covariates["id"].levels)[data.covariates["id"].values[rows].astype(int)]
    return pd.DataFrame({"time": data.covariates["time"].values[rows],
                         "sex": data.covariates["sex"].values[rows], "id": ids})


def slope_spread(fitted) -> float:
    """Std over subjects of the fitted latent slope rows (column ``time`` of ``(1 + time | id)``),
    averaged over latent dimensions."""
    table = fitted.model.prior.effects.random_mean[0].detach().numpy()
    n_levels, n_cols = fitted.model.prior.effects.term_shapes[0]
    return float(table.reshape(n_levels, n_cols, -1)[:, 1].std(axis=0, ddof=1).mean())


def slope_tau(fitted) -> float:
    """The learned τ_r of the slope column, averaged over latent dimensions (NaN: fixed τ_r)."""
    taus = fitted.model.prior.log_tau_random
    if taus is None:
        return float("nan")
    n_cols = fitted.model.prior.effects.term_shapes[0][1]
    return float(taus[0].detach().exp().view(n_cols, -1)[1].mean())


def one(setting: str, slope_sd: float, seed: int, mode: str, epochs: int) -> dict:
    data, _ = simulate(slope_sd, seed)
    start = clock.time()
    fitted = lmmvae.fit(data, seed=seed, epochs=epochs, prior={"random_effects": mode}, **RECIPE)
    out = {"data": setting, "seed": seed, "random_effects": mode, "seconds": round(clock.time() - start, 1),
           "slope_spread": slope_spread(fitted), "tau_slope": slope_tau(fitted)}
    for name, code in (("val", 1), ("test", 2)):
        rows = np.flatnonzero(data.split == code)
        pred = fitted.predict(frame(data, rows), level=0.9)
        lower = pred[[c for c in pred.columns if c.endswith("_lower")]].to_numpy()
        upper = pred[[c for c in pred.columns if c.endswith("_upper")]].to_numpy()
        mean = pred[[c for c in pred.columns if c.endswith("_mean")]].to_numpy()
        out[f"mse_{name}"] = float(np.mean((mean - data.y[rows]) ** 2))
        out[f"cover90_{name}"] = float(np.mean((data.y[rows] >= lower) & (data.y[rows] <= upper)))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--data", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []
    for setting in args.data:
        slope_sd = SETTINGS[setting]
        for seed in args.seeds:
            for mode in ("point", "gaussian"):
                rows.append(one(setting, slope_sd, seed, mode, args.epochs))
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    print(table.groupby(["data", "random_effects"]).mean(numeric_only=True).drop(columns="seed").to_string())


if __name__ == "__main__":
    main()
