"""The map: on which data does LMM-VAE beat one mixed model per feature?

    .venv/bin/python -m benchmarks.map [--seeds 3] [--slices A B] [--out DIR] [--quick]

**Data** (simulated; :func:`simulate_map`): a latent LMM of rank ``r`` decoded to ``D`` features,
as :mod:`benchmarks.simulate_lmm` but with any ``r``, any ``D`` and three decoders. For subject
``p`` with binary ``sex_p`` and visit times ``t`` in [0, 1]::

    z_k(t) = f_k(t) + γ_k·sex_p + b0_pk + b1_pk·t,   k = 1..r,  b0, b1 ~ N(0, 0.8²)
    f      = (sin 2πt, cos πt, cos 2πt, sin πt, t − ½)[:r],  γ_k = ±0.8 alternating
    y      = g(z) + noise·ε,  ε ~ N(0, I_D)

``g`` (:data:`DECODERS`): ``linear`` (``z W + c``, W ~ N(0, 1/r)), ``tanh32`` (r → 32 tanh → D, the
accuracy benchmark's) or ``elu64x2`` (r → 64 ELU → 64 ELU → D). Every feature is a function of the
same ``r`` latent trajectories, so ``r < D`` means the features share structure, ``r = D`` (with
a generic decoder) that they do not. 60 subjects × 8 visits; the last 3 visits of every other
subject are the test rows (future prediction), the other rows 85:15 train : validation at random.

**Slices** (a full grid is too costly on a CPU; fixed before running):

* A, D × r: D ∈ {1, 5, 20, 100}, r ∈ {1, 5} capped at D (7 cells), decoder ``tanh32``, noise 0.2;
  its r = 2 row shows slice B's D = 20, r = 2, tanh32, noise 0.2 cell (r = 2 at every D: too costly);
* B, decoder × noise: decoder ∈ {linear, tanh32, elu64x2}, noise ∈ {0.05, 0.2, 0.5} (9 cells),
  D = 20, r = 2.

16 cells × 3 seeds. The oLMM-VAE epoch budget is the library's (1000, patience 50) unless
``--epochs N``; rows are cached per budget. At 1000 one cell × seed costs ~2 CPU-minutes (two
latent sizes; these small runs often use the whole budget) and MixedLM at D = 100 several more, so
the whole map takes hours on a 2-core CPU; the run in docs/map.md is a 200-epoch map at seed 0,
with a few cells checked at the library's budget.

**Models**, each given its best fair shot, chosen on the *validation* rows only (never test):

* oLMM-VAE, ELBO, the library's defaults (``network: mlp``, patience 50, 1000 epochs, ...; the
  budget can be cut with ``--epochs``), design :data:`DESIGN` (contains the generating latent
  model); ``latent_dim`` chosen among ``{r, 2r}`` by the validation MSE of the prediction from
  covariates (docs/model.md 2.4);
* MixedLM per feature (``variant: mixedlm``), which chooses its design (one for all features) among
  :data:`MIXEDLM_CANDIDATES` by the pooled validation MSE and refits it on train + validation rows;
* truth: ``g(z)`` at the true latent, the noise floor (≈ noise²).

Metric: test MSE ratio oLMM-VAE / MixedLM per seed, mean ± sd over seeds (seeds 0..2: data and
training). Writes ``<out>/cells.csv`` (one row per cell × seed, appended as it goes: a rerun
resumes), ``<out>/summary.csv``, ``<out>/table.md`` and the figure ``docs/figures/map.png`` (with
the default ``--out``; ``--figure`` to change). Real data sets appear on the figure as points placed
by D and an effective rank (:mod:`benchmarks.map_real`).
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

from benchmarks import harness
from benchmarks.map_real import effective_rank, real_points
from benchmarks.simulate_lmm import HIDDEN, _elu_decoder
from lmmvae.data.h5 import Covariate, LongitudinalData

NAME = "map"
DEFAULT_OUT = harness.RESULTS / NAME
FIGURE = Path("docs") / "figures" / "map.png"
DESIGN = "~ time + fourier(time, 2, period=2) + sex + (1 + time | id)"
MIXEDLM_CANDIDATES = ["~ time + sex + (1 | id)", "~ time + sex + (1 + time | id)"]
DECODERS = ("linear", "tanh32", "elu64x2")
RANDOM_SD = 0.8
SUBJECTS, VISITS, FUTURE = 60, 8, 3
SLICE_A = {"D": (1, 5, 20, 100), "r": (1, 5), "decoder": "tanh32", "noise": 0.2}
CHEAP_D = 20  # run_map runs the cells with more features last
EPOCHS = None  # oLMM-VAE's epoch budget: None, the library's (1000, patience 50)
SLICE_B = {"decoder": DECODERS, "noise": (0.05, 0.2, 0.5), "D": 20, "r": 2}


# -- data -----------------------------------------------------------------------------------------
def shared_effect(time_: np.ndarray, rank: int) -> np.ndarray:
    """``f(t)``: [N, rank] columns of ``(sin 2πt, cos πt, cos 2πt, sin πt, t − ½)``, inside DESIGN's span."""
    bank = [np.sin(2 * np.pi * time_), np.cos(np.pi * time_), np.cos(2 * np.pi * time_),
            np.sin(np.pi * time_), time_ - 0.5]
    return np.stack([bank[k % len(bank)] for k in range(rank)], axis=1)


def make_decoder(kind: str, rank: int, data_dim: int, decoder_seed: int = 1234):
    """The fixed random map ``g: z [N, rank] → y [N, data_dim]`` of ``kind`` (:data:`DECODERS`)."""
    if kind not in DECODERS:
        raise ValueError(f"map decoder: kind must be one of {DECODERS}, got {kind!r}")
    rng = np.random.default_rng(decoder_seed + 7919 * rank + data_dim)
    if kind == "elu64x2":
        return _elu_decoder(rng, data_dim, rank)
    if kind == "linear":
        w = rng.normal(size=(rank, data_dim)) / np.sqrt(rank)  # [r, D]: outputs of std ~ z's
        c = rng.normal(0.0, 0.2, size=data_dim)
        return lambda z: np.asarray(z, dtype=np.float64) @ w + c
    w1 = rng.normal(size=(rank, HIDDEN))  # as simulate_lmm's tanh32: pre-activations of std ~2
    c1 = rng.normal(0.0, 0.5, size=HIDDEN)
    w2 = rng.normal(size=(HIDDEN, data_dim)) / np.sqrt(HIDDEN)
    c2 = rng.normal(0.0, 0.2, size=data_dim)
    return lambda z: np.tanh(np.asarray(z, dtype=np.float64) @ w1 + c1) @ w2 + c2


def simulate_map(data_dim: int, rank: int, decoder: str = "tanh32", noise: float = 0.2, seed: int = 0,
                 n_subjects: int = SUBJECTS, n_visits: int = VISITS, n_future: int = FUTURE) -> LongitudinalData:
    """One cell's data (module docstring); ``y_full`` = g(z) (the noise-free decoding), ``latent_truth`` = z."""
    if data_dim < 1 or rank < 1 or noise < 0 or not 0 < n_future < n_visits:
        raise ValueError(f"simulate_map: need D >= 1, r >= 1, noise >= 0, 0 < n_future < n_visits; "
                         f"got D={data_dim}, r={rank}, noise={noise}, n_future={n_future}, n_visits={n_visits}")
    g = make_decoder(decoder, rank, data_dim)
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), n_visits)  # [N]
    step = np.tile(np.arange(n_visits), n_subjects)  # [N]
    jitter = rng.uniform(-0.25, 0.25, size=(n_subjects, n_visits)) / (n_visits - 1)
    time_ = np.sort(np.clip(np.arange(n_visits) / (n_visits - 1) + jitter, 0.0, 1.0), axis=1).ravel()
    sex = rng.integers(0, 2, size=n_subjects)  # [P]
    gamma = 0.8 * np.where(np.arange(rank) % 2 == 0, 1.0, -1.0)  # [r]
    b0 = rng.normal(0.0, RANDOM_SD, size=(n_subjects, rank))  # [P, r]
    b1 = rng.normal(0.0, RANDOM_SD, size=(n_subjects, rank))  # [P, r]
    z = shared_effect(time_, rank) + sex[subject, None] * gamma + b0[subject] + b1[subject] * time_[:, None]
    clean = g(z)  # [N, D]
    y = clean + noise * rng.normal(size=clean.shape)
    split = np.where(rng.random(subject.size) < 0.15, 1, 0).astype(np.uint8)
    split[(subject % 2 == 0) & (step >= n_visits - n_future)] = 2
    return LongitudinalData(
        y=y, mask=np.ones(y.shape, dtype=np.uint8), split=split,
        covariates={"time": Covariate(time_, "time"), "sex": Covariate(sex[subject], "binary"),
                    "id": Covariate(subject, "id", levels=[f"s{p}" for p in range(n_subjects)])},
        y_full=clean, latent_truth=z,
        attrs={"name": "map", "D": data_dim, "rank": rank, "decoder": decoder, "noise": float(noise), "seed": seed})


def cells(slices: list[str]) -> list[dict]:
    """The cells of the named slices (module docstring), each once: ``{slice, D, r, decoder, noise}``."""
    out: dict[tuple, dict] = {}
    if "A" in slices:
        for d in SLICE_A["D"]:
            for r in sorted({min(r, d) for r in SLICE_A["r"]}):
                out.setdefault((d, r, SLICE_A["decoder"], SLICE_A["noise"]), {"slice": "A"})
    if "B" in slices:
        for kind in SLICE_B["decoder"]:
            for noise in SLICE_B["noise"]:
                key = (SLICE_B["D"], SLICE_B["r"], kind, noise)
                out[key] = {"slice": "AB" if key in out else "B"}
    return [{**v, "D": k[0], "r": k[1], "decoder": k[2], "noise": k[3]} for k, v in out.items()]


# -- fitting ---------------------------------------------------------------------------------------
def _split_mse(y: np.ndarray, pred: np.ndarray, rows: np.ndarray) -> float:
    """Mean squared error over the (fully observed) ``rows`` of ``y`` [N, D]."""
    return float(np.mean((y[rows] - pred[rows]) ** 2))


def fit_olmm(data: LongitudinalData, latent_dim: int, run_dir: Path, seed: int, epochs: int | None) -> dict:
    """oLMM-VAE (ELBO, library defaults, DESIGN) at ``latent_dim``: validation and test MSE of the
    prediction from covariates (docs/model.md 2.4), the epochs run and the seconds."""
    import lmmvae
    import torch
    from lmmvae.answers.predict import predict_rows

    extra = {} if epochs is None else {"epochs": epochs}
    start = time.perf_counter()
    fitted = lmmvae.fit(data, out=run_dir, seed=seed, variant="olmm", objective="elbo", design=DESIGN,
                        latent_dim=latent_dim, network="mlp", progress=False, threads=1, overwrite=True, **extra)
    torch.manual_seed(seed)
    tensors = fitted.tensors(data)
    pred = predict_rows(fitted, tensors, tensors.indices(None))["y_pred"]  # [N, D]
    history = fitted.history  # one row per epoch run
    return {"latent_dim": latent_dim, "mse_val": _split_mse(data.y, pred, data.split == 1),
            "mse_test": _split_mse(data.y, pred, data.split == 2), "epochs_run": int(len(history)),
            "seconds": time.perf_counter() - start}


def fit_mixedlm(data: LongitudinalData, run_dir: Path, seed: int) -> dict:
    """MixedLM per feature (``variant: mixedlm``), design chosen on validation among DESIGN and
    :data:`MIXEDLM_CANDIDATES`: test MSE and the design that won."""
    import lmmvae

    start = time.perf_counter()
    fitted = lmmvae.fit(data, out=run_dir, seed=seed, variant="mixedlm", design=DESIGN,
                        prior={"candidates": MIXEDLM_CANDIDATES}, progress=False, overwrite=True)
    pred = fitted.evaluation_inputs(data).y_pred  # [N, D]
    return {"mse_test": _split_mse(data.y, pred, data.split == 2), "design": fitted.design_chosen or DESIGN,
            "seconds": time.perf_counter() - start}


def latent_choices(rank: int) -> list[int]:
    """The latent sizes oLMM-VAE chooses among on validation rows: ``{r, 2r}``."""
    return [rank, 2 * rank]


def run_cell(cell: dict, seed: int, out: Path, epochs: int | None = None, n_subjects: int = SUBJECTS) -> dict:
    """One cell × seed: the data, both models at their best on validation, the truth row, the ratio."""
    data = simulate_map(cell["D"], cell["r"], cell["decoder"], cell["noise"], seed, n_subjects=n_subjects)
    tag = f"D{cell['D']}-r{cell['r']}-{cell['decoder']}-n{cell['noise']}-seed{seed}-e{budget(epochs)}"
    fits = [fit_olmm(data, k, out / "runs" / f"olmm-L{k}-{tag}", seed, epochs) for k in latent_choices(cell["r"])]
    best = min(fits, key=lambda f: f["mse_val"])  # validation rows only
    mixed = fit_mixedlm(data, out / "runs" / f"mixedlm-{tag}", seed)
    test = data.split == 2
    return {**cell, "seed": seed, "epochs_budget": budget(epochs), "olmm_mse": best["mse_test"],
            "mixedlm_mse": mixed["mse_test"],
            "ratio": best["mse_test"] / mixed["mse_test"], "truth_mse": _split_mse(data.y, data.y_full, test),
            "latent_dim": best["latent_dim"],
            "val_mse_by_latent": " ".join(f"{f['latent_dim']}:{f['mse_val']:.4f}" for f in fits),
            "epochs_run": best["epochs_run"], "mixedlm_design": mixed["design"],
            "olmm_seconds": sum(f["seconds"] for f in fits), "mixedlm_seconds": mixed["seconds"]}


# -- the run ---------------------------------------------------------------------------------------
def budget(epochs: int | None) -> int:
    """The epoch budget a run gets: ``epochs``, or the library's default (``None``)."""
    from lmmvae.config import ModelConfig

    return int(epochs if epochs is not None else ModelConfig.__dataclass_fields__["epochs"].default)


def _key(row: dict) -> tuple:
    """A cell × seed × epoch budget: what the cache is keyed by."""
    return (int(row["D"]), int(row["r"]), str(row["decoder"]), float(row["noise"]), int(row["seed"]),
            int(row["epochs_budget"]))


def read_rows(path: Path) -> list[dict]:
    """The cached cell × seed rows of ``path`` (empty if absent), numbers as floats."""
    if not path.exists():
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for k, v in row.items():
            if k not in ("slice", "decoder", "val_mse_by_latent", "mixedlm_design"):
                row[k] = float(v) if v not in ("", None) else math.nan
    return rows


def run_map(todo: list[dict], seeds: int, out: Path, epochs: int | None, n_subjects: int = SUBJECTS) -> list[dict]:
    """Every cell of ``todo`` at seeds 0..seeds−1: first the cells with D ≤ :data:`CHEAP_D` seed by
    seed, then the dearer ones (MixedLM at D = 100 costs minutes per fit), so a cut-short run has
    whole seeds of the cheap cells; rows already in ``<out>/cells.csv`` are kept, not rerun; the CSV
    is rewritten after each cell × seed."""
    path = out / "cells.csv"
    rows = read_rows(path)
    done = {_key(r) for r in rows}
    total, start = seeds * len(todo), time.perf_counter()
    tiers = [[c for c in todo if c["D"] <= CHEAP_D], [c for c in todo if c["D"] > CHEAP_D]]
    order = [(seed, cell) for tier in tiers for seed in range(seeds) for cell in tier]
    for n, (seed, cell) in enumerate(order, start=1):
        if _key({**cell, "seed": seed, "epochs_budget": budget(epochs)}) in done:
            print(f"[{n}/{total}] {cell} seed {seed}: cached", flush=True)
            continue
        row = run_cell(cell, seed, out, epochs, n_subjects)
        rows.append(row)
        harness.write_csv(rows, path)
        print(f"[{n}/{total}] D={cell['D']} r={cell['r']} {cell['decoder']} noise {cell['noise']} seed {seed}: "
              f"oLMM-VAE {row['olmm_mse']:.4f} (L={row['latent_dim']}), MixedLM {row['mixedlm_mse']:.4f}, "
              f"ratio {row['ratio']:.3f}, truth {row['truth_mse']:.4f}; "
              f"{time.perf_counter() - start:.0f} s so far", flush=True)
    return rows


def _mean_sd(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def summarise(rows: list[dict]) -> list[dict]:
    """One row per cell: mean ± sd over seeds of the ratio (per seed) and of the three MSEs."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_key(row)[:4], []).append(row)
    out = []
    for (d, r, decoder, noise), runs in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][3], kv[0][0], kv[0][1])):
        item = {"slice": runs[0]["slice"], "D": d, "r": r, "decoder": decoder, "noise": noise, "seeds": len(runs)}
        for key in ("ratio", "olmm_mse", "mixedlm_mse", "truth_mse"):
            item[key], item[key + "_sd"] = _mean_sd([float(x[key]) for x in runs])
        item["latent_dims"] = " ".join(str(int(x["latent_dim"])) for x in runs)
        item["mixedlm_designs"] = " | ".join(sorted({_short(x["mixedlm_design"]) for x in runs}))
        item["olmm_wins"] = sum(float(x["ratio"]) < 1 for x in runs)
        out.append(item)
    return out


def _short(design: str) -> str:
    """A design as a table cell: ``fourier(time, 2, period=2)`` shortened, its ``|`` escaped."""
    return design.replace("~ ", "").replace("fourier(time, 2, period=2)", "fourier").replace("|", "\\|")


def _pm(mean: float, sd: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if math.isnan(sd) else f" ± {sd:.{digits}f}")


def table(summary: list[dict]) -> str:
    """The markdown table: one line per cell, slice A then slice B."""
    lines = ["| slice | D | r | decoder | noise | seeds | ratio oLMM-VAE / MixedLM | oLMM-VAE MSE | MixedLM MSE | "
             "truth (noise floor) | effective rank | oLMM-VAE ahead (seeds) | latent_dim chosen | "
             "MixedLM design chosen |",
             "| --- | --: | --: | --- | --: | --: | --: | --: | --: | --: | --: | --: | --- | --- |"]
    for s in sorted(summary, key=lambda s: (s["slice"] == "B", s["decoder"], s["noise"], s["D"], s["r"])):
        lines.append(f"| {s['slice']} | {s['D']} | {s['r']} | {s['decoder']} | {s['noise']:g} | {s['seeds']} | "
                     f"{_pm(s['ratio'], s['ratio_sd'], 2)} | {_pm(s['olmm_mse'], s['olmm_mse_sd'])} | "
                     f"{_pm(s['mixedlm_mse'], s['mixedlm_mse_sd'])} | {_pm(s['truth_mse'], s['truth_mse_sd'])} | "
                     f"{s.get('effective_rank', math.nan):.1f} | "
                     f"{s['olmm_wins']}/{s['seeds']} | {s['latent_dims']} | {s['mixedlm_designs']} |")
    return "\n".join(lines)


def add_effective_rank(summary: list[dict], n_subjects: int = SUBJECTS) -> list[dict]:
    """Each cell's effective rank (:func:`benchmarks.map_real.effective_rank`), mean over its seeds'
    data (simulated again: no fit), the number the real sets are placed by."""
    for s in summary:
        ranks = [effective_rank(simulate_map(s["D"], s["r"], s["decoder"], s["noise"], seed, n_subjects=n_subjects))
                 for seed in range(s["seeds"])]
        s["effective_rank"] = statistics.fmean(ranks)
    return summary


def real_table(real: list[dict]) -> str:
    """The real sets as placed on the figure: D, effective rank and the measured ratio."""
    lines = ["| real data set | D | effective rank | oLMM-VAE MSE | MixedLM MSE | ratio |",
             "| --- | --: | --: | --: | --: | --: |"]
    lines += [f"| {p['name']} | {p['D']} | {p['effective_rank']} | {p['olmm_mse']:.3f} | {p['mixedlm_mse']:.3f} | "
              f"{p['ratio']:.3f} |" for p in real]
    return "\n".join(lines)


QUICK_CELLS = [{"slice": "A", "D": 1, "r": 1, "decoder": "linear", "noise": 0.2},
               {"slice": "B", "D": 5, "r": 2, "decoder": "tanh32", "noise": 0.2}]


def main(argv=None) -> harness.Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="data and training seeds 0..N-1 (default 3)")
    parser.add_argument("--slices", nargs="+", choices=("A", "B"), default=["A", "B"], help="slices to run")
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help="oLMM-VAE epoch budget (default: the library's); cached per budget")
    parser.add_argument("--cells", nargs="+", default=None, metavar="D,r,DECODER,NOISE",
                        help="only these cells of the slices, e.g. 20,2,linear,0.05")
    parser.add_argument("--out", default=None, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--figure", default=None, help=f"figure path (default {FIGURE} with the default --out)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 small cells, 3 epochs: a smoke run")
    parser.add_argument("--report-only", action="store_true",
                        help="no fitting: the table and figure from the cells already in OUT/cells.csv")
    parser.add_argument("--device", default="cpu", help="accepted for make bench; the map runs on the CPU")
    parser.add_argument("--threads", type=int, default=None, help="accepted for make bench (one thread per fit)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else DEFAULT_OUT / ("quick" if args.quick else "")
    todo, seeds, epochs, subjects = cells(args.slices), args.seeds, args.epochs, SUBJECTS
    if args.quick:
        todo, seeds, epochs, subjects = QUICK_CELLS, 1, 3, 20
    start = time.perf_counter()
    if args.cells:
        todo = [c for c in todo if f"{c['D']},{c['r']},{c['decoder']},{c['noise']:g}" in args.cells]
    rows = read_rows(out / "cells.csv") if args.report_only else run_map(todo, seeds, out, epochs, subjects)
    rows = [r for r in rows if int(r["epochs_budget"]) == budget(epochs)]  # one budget per table
    summary = add_effective_rank(summarise(rows), subjects)
    real = [] if args.quick else real_points(out / "real")
    harness.write_csv(summary, out / "summary.csv")
    if args.out is None:  # make bench reads every benchmark's summary at results/benchmarks/<name>.csv
        harness.write_csv(summary, harness.RESULTS / f"{NAME}.csv")
    text = table(summary) + ("\n\n" + real_table(real) if real else "")
    command = ("python -m benchmarks.map " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    notes = [f"{subjects} subjects × {VISITS} visits, test = last {FUTURE} visits of every other subject; seeds "
             f"0..{seeds - 1} asked (column seeds: how many a cell has); oLMM-VAE ELBO, library defaults, "
             f"epoch budget {budget(epochs)}, latent_dim chosen in {{r, 2r}} on "
             f"validation MSE; MixedLM design chosen on validation among `{DESIGN}` and {MIXEDLM_CANDIDATES}.",
             f"this invocation: {(time.perf_counter() - start) / 60:.1f} min (cached cells not rerun)."]
    result = harness.Result(NAME, summary, text, command, harness.describe_machine(__import__("torch").device("cpu")),
                            notes)
    (out / "table.md").write_text(result.markdown() + "\n")
    figure = Path(args.figure) if args.figure else (FIGURE if args.out is None and not args.quick else out / "map.png")
    try:
        from benchmarks.map_figure import draw
        seeds = sorted({int(s["seeds"]) for s in summary})
        draw(summary, figure, real, f"oLMM-VAE epoch budget {budget(epochs)}; seeds per cell: "
             f"{'-'.join(map(str, seeds[::max(len(seeds) - 1, 1)]))} (blank: not run)")
        print(f"figure: {figure}")
    except ImportError as err:  # matplotlib absent: the table stands alone
        print(f"no figure ({err})")
    print(result.markdown())
    return result


if __name__ == "__main__":
    main()
