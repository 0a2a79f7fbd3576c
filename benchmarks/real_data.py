"""Real data: every LMM-VAE variant against MixedLM and the feature mean on survival's ``pbcseq``.

    .venv/bin/python -m benchmarks.real_data [--seeds 3] [--out DIR] [--quick]

Data: ``lmmvae data example pbcseq`` (Mayo PBC: 312 patients, 7 labs, skewed ones on the log scale,
irregular visits; every visit after year 5 of a patient seen before it is a test row). Models,
each with the library's defaults except what a user must say (design, subject, latent size):

* oLMM-VAE and sLMM-VAE, each trained by the ELBO and by GSNN, latent_dim 2; designs as in the
  README's real-data quick start (sLMM-VAE under the ELBO has its subject offsets and no random
  term; under GSNN the subject enters only through the design, docs/model.md 4);
* MixedLM: one per lab, its design chosen on validation rows among LMM-VAE's design, ``years +
  (1 + years | id)`` and that plus the covariates (docs/configuration.md), refitted on train +
  validation rows;
* the feature mean.

Scored on the test rows (standardised scale): MSE, NLL (importance-sampled for ELBO models, prior
sampling after GSNN, exact for the classical rows), and the share of held-out entries inside the
90 % predictive interval. Decided before the numbers: a model is *ahead* of another when it is
better in every seed and the mean gap exceeds two standard errors (the claims rule,
lmmvae/reporting/claims.py); the classical rows are deterministic and paired with every seed.
Writes ``<out>/runs.csv`` and ``<out>/table.md``.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

COVARIATES = "years + trt + sex + age + edema0 + stage0"
MODELS = {
    "olmm_elbo": ("oLMM-VAE (ELBO)", {"variant": "olmm", "objective": "elbo", "design": f"~ {COVARIATES} + (1 | id)"}),
    "olmm_gsnn": ("oLMM-VAE (GSNN)", {"variant": "olmm", "objective": "gsnn", "design": f"~ {COVARIATES} + (1 | id)"}),
    "slmm_elbo": ("sLMM-VAE (ELBO)", {"variant": "slmm", "objective": "elbo", "design": f"~ {COVARIATES}"}),
    "slmm_gsnn": ("sLMM-VAE (GSNN)", {"variant": "slmm", "objective": "gsnn", "design": f"~ {COVARIATES} + (1 | id)"}),
    "mixedlm": ("MixedLM (per lab)", {"variant": "mixedlm", "design": f"~ {COVARIATES} + (1 | id)",
                                      "prior": {"candidates": ["~ years + (1 + years | id)",
                                                               f"~ {COVARIATES} + (1 + years | id)"]}}),
    "mean": ("Feature mean", {"variant": "mean"}),
}
LATENT_DIM = 2
LEVEL = 0.9


def coverage(fitted, data, level: float = LEVEL) -> float:
    """Share of the observed test entries inside the model's ``level`` predictive interval."""
    from lmmvae.answers.intervals import predict_frame, table_scale

    test = data.split == 2
    frame = data.covariate_frame()[test].reset_index(drop=True)
    table = predict_frame(fitted, frame, level=level)
    pick = lambda suffix: table[[c for c in table.columns if c.endswith(suffix)]].to_numpy(float)  # noqa: E731
    y = data.y[test].astype(np.float64)
    scale = table_scale(fitted)
    if scale is not None:  # the table is in the data's units
        y = y * scale[1] + scale[0]
    observed = data.mask[test] == 1
    inside = (y >= pick("_lower")) & (y <= pick("_upper"))
    return float(inside[observed].mean())


def run_one(key: str, data, seed: int, out: Path, quick: bool) -> dict:
    import lmmvae

    label, settings = MODELS[key]
    extra = {} if settings["variant"] in ("mixedlm", "mean") else {"latent_dim": LATENT_DIM, "subject": "id"}
    if quick and not extra == {}:
        extra["epochs"] = 2
    start = time.perf_counter()
    fitted = lmmvae.fit(data, out=out / "runs" / f"{key}-seed{seed}", seed=seed, progress=False, threads=1,
                        **settings, **extra)
    metrics = fitted.evaluate(data)
    row = {"model": key, "label": label, "seed": seed, "mse_test": metrics["mse_test"],
           "nll_test": metrics.get("nll_test", math.nan), "coverage90": coverage(fitted, data),
           "seconds": time.perf_counter() - start}
    if "active_dims" in metrics:
        row["active_dims"] = metrics["active_dims"]
    return row


def _cell(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def table(rows: list[dict]) -> str:
    from lmmvae.reporting.claims import decide
    import pandas as pd

    lines = ["| model | test MSE | test NLL | 90 % interval covers | ahead of the feature mean | ahead of MixedLM |",
             "| --- | --: | --: | --: | --- | --- |"]
    per = {k: [r for r in rows if r["model"] == k] for k in MODELS}

    def series(key):
        rs = per[key]
        if key in ("mixedlm", "mean"):
            return pd.Series([rs[0]["mse_test"]], index=[None]) if rs else pd.Series(dtype=float)
        return pd.Series([r["mse_test"] for r in rs], index=[r["seed"] for r in rs])

    for key, (label, _) in MODELS.items():
        rs = per[key]
        if not rs:
            continue
        neural = key not in ("mixedlm", "mean")
        versus = [decide(series(key), series(other), False).verdict if neural else "–" for other in ("mean", "mixedlm")]
        words = [{"X ahead": "yes", "Y ahead": "no (behind)", "tie": "no (tie)"}.get(v, v) for v in versus]
        lines.append(f"| {label} | {_cell([r['mse_test'] for r in rs])} | {_cell([r['nll_test'] for r in rs], 2)} | "
                     f"{_cell([r['coverage90'] for r in rs], 2)} | {words[0]} | {words[1]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--out", default="results/benchmarks/real_data", help="output directory")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 seed: a smoke run")
    parser.add_argument("--resume", action="store_true", help="keep the rows of OUT/runs.csv, run the missing ones")
    args = parser.parse_args(argv)
    from lmmvae.data.sets.examples import example

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = example("pbcseq")
    rows = []
    if args.resume and (out / "runs.csv").exists():
        with open(out / "runs.csv") as f:
            rows = [{k: (v if k in ("model", "label") else float(v) if v else math.nan) for k, v in r.items()}
                    for r in csv.DictReader(f)]
        for r in rows:
            r["seed"] = int(r["seed"])
    done = {(r["model"], r["seed"]) for r in rows}
    for seed in range(1 if args.quick else args.seeds):
        for key in args.models:
            if (key in ("mixedlm", "mean") and seed > 0) or (key, seed) in done:
                continue  # deterministic: fitted once; or kept from an earlier run
            rows.append(run_one(key, data, seed, out, args.quick))
            print(f"seed {seed} {key}: mse_test {rows[-1]['mse_test']:.4f}, coverage {rows[-1]['coverage90']:.3f}, "
                  f"{rows[-1]['seconds']:.0f} s", flush=True)
            with open(out / "runs.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
                writer.writeheader()
                writer.writerows(rows)
    text = table(rows)
    command = "python -m benchmarks.real_data " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "table.md").write_text(f"_Command: `{command.strip()}`_\n\n{text}")
    print(text)
    return rows


if __name__ == "__main__":
    main()
