"""Training-recipe study on validation data only: which learning rate, schedule, early stopping,
noise scales, ``q(A)`` and random-effect learning rate make a model converge.

    .venv/bin/python -m benchmarks.recipe_study [--grid benchmarks/recipe_grids/simulated.yaml]
        [--set lr=0.001,0.003 --set prior.q_A=gaussian,point] [--mode one-at-a-time|product]
        [--data simulated|PATH.h5] [--seeds 0 1] [--markdown docs/recipe_study.md] [--quick]

A grid (YAML, options on the command line override it)::

    name: simulated                       # the block of the Markdown file this grid's table fills
    data: simulated                       # or an HDF5 file built by `lmmvae data …`
    simulate: {n_subjects: 60, seed: 0}   # options of benchmarks.simulate_lmm.simulate_lmm
    seeds: [0]
    mode: one-at-a-time                   # each value of each key alone, or `product` (all combinations)
    models:                               # fixed settings per model (lmmvae.fit keys)
      olmm_elbo: {variant: olmm, objective: elbo, design: "~ …", latent_dim: 2, network: mlp}
    grid:                                 # overrides; `prior.KEY` sets a key of `prior:`
      lr: [0.001, 0.003]
      lr_decay: [1.0, 0.99]
      prior.q_A: [gaussian, point]
      lr_random_effects_factor: [1, 10]   # sets lr_random_effects = factor × lr

Several data sets (``datasets:``, each with its own ``data``, ``simulate`` and ``models``; the
top-level ``models`` when it has none) are run seed by seed (every data set at seed 0 first, so a
study cut short still covers every data set), and the table is then per data set (mean ± sd over
seeds) followed by the verdict of ``rule:`` (:mod:`benchmarks.recipe_verdict`)::

    datasets:
      sim60: {data: simulated, simulate: {n_subjects: 60}, models: {olmm_elbo: {…}}}
      physionet: {data: results/recipe_data/physionet.h5, models: {olmm_elbo: {…}}}
    rule: {threshold: 0.97, min_share: 0.75}

Every grid point is trained from the library's defaults with only the listed overrides, plus one
row with none (``defaults``), per model and seed. A grid point whose keys do not apply to a model's
variant (e.g. ``prior.q_A`` for ``slmm``) is skipped and listed.

**Test rows are never read**: the data are cut to the train and validation splits (split 0, 1)
before anything else. Reported per point (mean over seeds): validation prediction MSE (the
validation rows predicted from their covariates by ``model.predict_arrays`` — random effects and subject
offsets come from the training rows only — scored on their observed entries), the best validation
loss (the objective per row; comparable within one objective only), the best epoch, the epochs run
against the budget, and seconds. The table goes into ``--markdown`` between
``<!-- BEGIN recipe_study:<name> -->`` and ``<!-- END … -->`` (the text around it is kept), and
as CSV into ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks import harness
from benchmarks.run_all import update_markdown
from lmmvae.answers.metrics import mse
from lmmvae.data.h5 import SPLITS, LongitudinalData, read_h5
from lmmvae.errors import ConfigError

DEFAULT_GRID = Path(__file__).with_name("recipe_grids") / "simulated.yaml"
DEFAULT_MARKDOWN = Path("docs") / "recipe_study.md"
DEFAULT_OUT = Path("results") / "recipe_study"
FACTOR_KEY = "lr_random_effects_factor"  # pseudo-key: lr_random_effects = factor × lr


# -- grid ---------------------------------------------------------------------------------------
def parse_value(text: str):
    """A command-line value as YAML reads it (``0.003`` → float, ``true`` → bool, ``point`` → str)."""
    return yaml.safe_load(text)


def parse_set(items: list[str]) -> dict[str, list]:
    """``["lr=0.001,0.003", "prior.q_A=point"]`` → ``{"lr": [0.001, 0.003], "prior.q_A": ["point"]}``."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE[,VALUE…]")
        grid[key.strip()] = [parse_value(v.strip()) for v in values.split(",")]
    return grid


def points(grid: dict[str, list], mode: str) -> list[dict]:
    """Override dicts: ``{}`` (the defaults) first, then each grid point."""
    if mode not in ("one-at-a-time", "product"):
        raise ConfigError(f"mode must be one-at-a-time or product, got {mode!r}")
    out = [{}]
    if mode == "product" and grid:
        keys = list(grid)
        out += [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    else:
        out += [{key: value} for key, values in grid.items() for value in values]
    return out


def apply(settings: dict, overrides: dict) -> dict:
    """``settings`` with ``overrides`` applied (``prior.KEY`` into ``prior:``; the lr factor resolved)."""
    out = copy.deepcopy(settings)
    factor = None
    for key, value in overrides.items():
        if key == FACTOR_KEY:
            factor = value
        elif "." in key:
            head, tail = key.split(".", 1)
            out.setdefault(head, {})[tail] = value
        else:
            out[key] = value
    if factor is not None:
        from lmmvae.config import ModelConfig

        lr = out.get("lr", ModelConfig.lr)
        out["lr_random_effects"] = float(factor) * float(lr)
    return out


def label(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"


# -- data ---------------------------------------------------------------------------------------
def load_data(source: str, simulate: dict | None) -> LongitudinalData:
    """The train and validation rows of ``source`` ("simulated" or an HDF5 path); test rows are
    dropped here, before anything reads them."""
    if source == "simulated":
        from benchmarks.simulate_lmm import simulate_lmm

        data = simulate_lmm(**(simulate or {}))
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"{path}: no such data file (build one with `lmmvae data …`, or use data: simulated)")
        data = read_h5(path)
    keep = np.flatnonzero(data.split != SPLITS["test"])
    data = data.subset(keep)
    if not (data.split == SPLITS["validation"]).any():
        raise ConfigError(f"{source}: no validation rows; the study selects on validation data only")
    return data


# -- one point ----------------------------------------------------------------------------------
def train_point(data: LongitudinalData, settings: dict, seed: int, run_dir: Path | None,
                device: str) -> dict:
    """Fit with ``settings`` and score the validation rows (predicted from covariates alone)."""
    import lmmvae
    from lmmvae.reporting.curves import read_history

    assert not (data.split == SPLITS["test"]).any(), "test rows must be dropped before training"
    start = time.perf_counter()
    fitted = lmmvae.fit(data, out=run_dir, seed=seed, progress=False, device=device, **settings)
    seconds = time.perf_counter() - start
    val = data.split == SPLITS["validation"]
    frame = data.subset(np.flatnonzero(val)).covariate_frame()
    pred = fitted.predict_arrays(frame)["y_pred"]  # [n_val, D]
    out = {"val_mse": mse(data.y[val], pred, data.mask[val] == 1), "seconds": seconds,
           "max_epochs": fitted.config.epochs}
    if run_dir is not None and (run_dir / "history.csv").exists():  # classical rows keep none
        history = read_history(run_dir / "history.csv", max_epochs=fitted.config.epochs)
        out.update(val_loss=history["best_val_loss"], best_epoch=history["best_epoch"],
                   epochs_run=history["epochs_run"], stopped_early=history["stopped_early"])
    return out


def resolved(settings: dict) -> tuple[str | None, str | None]:
    """``(key, None)`` for valid ``settings``, ``key`` naming the model they make after the library
    resolves its defaults (two grid points with one key train one model: the second is skipped);
    ``(None, message)`` when they are not a valid model config."""
    import dataclasses
    import json

    from lmmvae.training import train

    try:  # the registry checks live in lmmvae.training.checks where it exists, on ModelConfig before
        from lmmvae.training.checks import config_from_dict, prior_options
    except ImportError:
        from lmmvae.config import ModelConfig

        config_from_dict, prior_options = ModelConfig.from_dict, lambda config: config.prior_options()
    try:
        config = config_from_dict(settings)
        values = config.to_dict()
        values["prior"] = dataclasses.asdict(prior_options(config))
    except ConfigError as err:
        return None, str(err)
    if values["lr_random_effects"] is None:
        values["lr_random_effects"] = getattr(train, "RANDOM_EFFECTS_LR_FACTOR", 10) * config.lr
    return json.dumps(values, sort_keys=True, default=str), None


# -- summary ------------------------------------------------------------------------------------
def _mean(values) -> float:
    values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(values) if values else math.nan


def summarise(rows: list[dict]) -> list[dict]:
    """Mean over seeds per (model, setting), in the order first seen; rank by validation MSE within
    each model (1 = best)."""
    keys = list(dict.fromkeys((r["model"], r["setting"]) for r in rows))
    out = []
    for model, setting in keys:
        runs = [r for r in rows if r["model"] == model and r["setting"] == setting]
        row = {"model": model, "setting": setting, "seeds": len(runs),
               "val_mse": _mean(r["val_mse"] for r in runs),
               "val_mse_sd": statistics.stdev([r["val_mse"] for r in runs]) if len(runs) > 1 else math.nan,
               "val_loss": _mean(r.get("val_loss") for r in runs),
               "best_epoch": _mean(r.get("best_epoch") for r in runs),
               "epochs_run": _mean(r.get("epochs_run") for r in runs),
               "max_epochs": runs[0]["max_epochs"],
               "stopped_early": f"{sum(bool(r.get('stopped_early')) for r in runs)}/{len(runs)}",
               "seconds": _mean(r["seconds"] for r in runs)}
        out.append(row)
    for model in dict.fromkeys(r["model"] for r in out):
        mine = sorted((r for r in out if r["model"] == model), key=lambda r: r["val_mse"])
        for rank, r in enumerate(mine, 1):
            r["rank"] = rank
    return out


COLUMNS = [
    harness.Column("model", "model"),
    harness.Column("setting", "setting (over library defaults)"),
    harness.Column("val_mse", "validation MSE", "{:.4f}"),
    harness.Column("rank", "rank"),
    harness.Column("val_loss", "best validation loss", "{:.3f}"),
    harness.Column("best_epoch", "best epoch", "{:.0f}"),
    harness.Column("epochs_run", "epochs run", "{:.0f}"),
    harness.Column("max_epochs", "budget"),
    harness.Column("stopped_early", "stopped early (converged)"),
    harness.Column("seconds", "s", "{:.0f}"),
]


# -- command line -------------------------------------------------------------------------------
def read_grid(path: Path | None) -> dict:
    if path is None:
        return {}
    if not path.exists():
        raise ConfigError(f"{path}: no such grid file")
    grid = yaml.safe_load(path.read_text()) or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{path}: expected a mapping (name, data, models, grid, …)")
    unknown = sorted(set(grid) - {"name", "data", "simulate", "seeds", "mode", "models", "grid", "note",
                                  "datasets", "rule"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    return grid


def study_datasets(spec: dict, args) -> dict[str, dict]:
    """``{name: {data, simulate, models}}`` of the grid (``datasets:``, or the one ``data:``), with
    ``--data``, ``--models``, ``--datasets`` and ``--quick`` applied."""
    top_models = spec.get("models") or {"olmm_elbo": {"variant": "olmm", "objective": "elbo"}}
    raw = spec.get("datasets") or {
        spec.get("data", "simulated"): {"data": spec.get("data", "simulated"), "simulate": spec.get("simulate")}}
    if args.data:
        raw = {args.data: {"data": args.data, "simulate": spec.get("simulate")}}
    if args.datasets:
        missing = sorted(set(args.datasets) - set(raw))
        if missing:
            raise ConfigError(f"--datasets: {', '.join(missing)} not in the grid's datasets ({', '.join(raw)})")
        raw = {k: v for k, v in raw.items() if k in args.datasets}
    out = {}
    for name, ds in raw.items():
        if not isinstance(ds, dict) or "data" not in ds:
            raise ConfigError(f"datasets: {name}: expected a mapping with data: (simulated or an HDF5 path)")
        simulate = dict(ds.get("simulate") or {})
        if args.quick:
            simulate.update(n_subjects=12, n_visits=6, data_dim=5)
        models = ds.get("models") or top_models
        if args.models:
            models = {k: v for k, v in models.items() if k in args.models}
        out[name] = {"data": ds["data"], "simulate": simulate, "models": models}
    if args.models and not any(ds["models"] for ds in out.values()):
        raise ConfigError(f"--models: {', '.join(args.models)} not in the grid's models")
    return out


def previous_rows(runs_csv: Path) -> list[dict]:
    """The rows of an earlier (interrupted) study's ``runs.csv``, numbers parsed; none if absent."""
    import csv

    if not runs_csv.exists():
        return []
    with open(runs_csv) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("val_mse", "seconds", "val_loss"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else math.nan
        for key in ("best_epoch", "epochs_run", "max_epochs", "seed"):
            row[key] = int(row[key]) if row.get(key) not in (None, "") else None
        row["stopped_early"] = row.get("stopped_early") == "True"
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default=str(DEFAULT_GRID), help=f"grid YAML (default: {DEFAULT_GRID}); 'none' for none")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="grid key and values (replaces the YAML's values of KEY); repeatable")
    parser.add_argument("--only-set", action="store_true", help="use only the --set keys, not the YAML's grid")
    parser.add_argument("--mode", choices=("one-at-a-time", "product"), default=None)
    parser.add_argument("--data", default=None, help="'simulated' or an HDF5 path (default: the YAML's data)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the YAML's)")
    parser.add_argument("--models", nargs="+", default=None, help="models of the YAML to run (default: all)")
    parser.add_argument("--name", default=None, help="Markdown block name (default: the YAML's name)")
    parser.add_argument("--out", default=None, help=f"CSV and run directory (default: {DEFAULT_OUT}/<name>)")
    parser.add_argument("--markdown", default=str(DEFAULT_MARKDOWN), help="file whose table block to replace; 'none' for none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 12 simulated subjects, no Markdown")
    parser.add_argument("--from-runs", default=None, nargs="+", metavar="RUNS_CSV",
                        help="no training: rebuild the table from previous studies' runs.csv (several: merged)")
    parser.add_argument("--datasets", nargs="+", default=None, help="data sets of the YAML's datasets: to run (default: all)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs of OUT/runs.csv and train only the plan's runs missing there")
    parser.add_argument("--no-defaults", action="store_true",
                        help="skip the defaults point (its runs come from another runs.csv, merged by --from-runs)")
    args = parser.parse_args(argv)
    harness.apply_threads(args.threads)
    if args.from_runs:
        return rebuild([Path(p) for p in args.from_runs], args)
    spec = read_grid(None if args.grid == "none" else Path(args.grid))
    grid = {} if args.only_set else dict(spec.get("grid") or {})
    grid.update(parse_set(args.set))
    name = args.name or spec.get("name", "study")
    seeds = args.seeds if args.seeds is not None else list(spec.get("seeds", [0]))
    mode = args.mode or spec.get("mode", "one-at-a-time")
    out = Path(args.out) if args.out else DEFAULT_OUT / name
    datasets = study_datasets(spec, args)
    plan, skipped = [], []
    for dname, ds in datasets.items():
        seen = {}
        for model, base in ds["models"].items():
            for overrides in points(grid, mode)[1 if args.no_defaults else 0:]:
                settings = apply(base, overrides)
                if args.quick:
                    settings["epochs"] = 2
                key, error = resolved(settings)
                prefix = f"{dname}: {model}" if len(datasets) > 1 else model
                if error:
                    skipped.append(f"{prefix}: {label(overrides)} (not valid: {error.split(': ', 1)[-1]})")
                elif key in seen:
                    skipped.append(f"{prefix}: {label(overrides)} (the library's default: same model as {seen[key]})")
                else:
                    seen[key] = label(overrides)
                    plan += [(seed, dname, model, overrides, settings) for seed in seeds]
    plan.sort(key=lambda item: seeds.index(item[0]))  # stable: seed-major, then data set, model, point
    loaded, rows = {}, previous_rows(out / "runs.csv") if args.resume else []
    done = {(r["dataset"], r["model"], r["setting"], int(r["seed"])) for r in rows}
    for seed, dname, model, overrides, settings in plan:
        if (dname, model, label(overrides), seed) in done:
            continue
        if dname not in loaded:
            ds = datasets[dname]
            loaded[dname] = load_data(ds["data"], ds["simulate"] if ds["data"] == "simulated" else None)
            data = loaded[dname]
            print(f"{dname} ({ds['data']}): {int((data.split == 0).sum())} train and {int((data.split == 1).sum())} "
                  f"validation rows (test rows dropped), {data.n_features} features", flush=True)
        tag = f"{dname}-{model}-{len(rows):03d}-seed{seed}" if len(datasets) > 1 else f"{model}-{len(rows):03d}-seed{seed}"
        result = train_point(loaded[dname], settings, seed, out / "runs" / tag, args.device)
        row = {"dataset": dname, "model": model, "setting": label(overrides), "seed": seed, **result}
        print(f"  {dname} {model} [{row['setting']}] seed {seed}: val MSE {row['val_mse']:.4f}, best epoch "
              f"{row.get('best_epoch')}/{row.get('epochs_run')}, {row['seconds']:.0f} s", flush=True)
        rows.append(row)
        harness.write_csv(rows, out / "runs.csv")
    command = ("python -m benchmarks.recipe_study " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    described = "; ".join(f"{d}: {v['data']}" + (f" {v['simulate']}" if v["data"] == "simulated" else "")
                          for d, v in datasets.items())
    header = (f"_Command: `{command}`; data: {described}; seeds {seeds}; mode {mode}; "
              f"{harness.describe_machine(__import__('torch').device('cpu'))}._")
    summary = summarise(rows)
    if len(datasets) > 1:
        from benchmarks import recipe_verdict

        rule = spec.get("rule") or {}
        table = recipe_verdict.markdown(rows, rule.get("threshold", recipe_verdict.THRESHOLD),
                                        rule.get("min_share", recipe_verdict.MIN_SHARE),
                                        planned_pairs=len(seeds) * len(datasets))
        summary = recipe_verdict.by_dataset(rows)
    else:
        table = harness.markdown_table(summary, COLUMNS)
    parts = [header, "", table]
    if skipped:
        parts += ["", "Not trained: " + "; ".join(skipped) + "."]
    body = "\n".join(parts)
    harness.write_csv(summary, out / "summary.csv")
    (out / "table.md").write_text(body + "\n")
    print(body)
    if args.markdown != "none" and not args.quick:
        update_markdown(Path(args.markdown), {f"recipe_study:{name}": body})
        print(f"table written to {args.markdown} (block recipe_study:{name})")
    return summary


def rebuild(runs_csvs: list[Path], args) -> list[dict]:
    """The table of finished studies from their ``runs.csv`` (several: the rows merged, e.g. a study
    split over processes by ``--datasets``); the header lines are kept from each study's ``table.md``
    next to it when there is one. Rows with a ``dataset`` column of more than one data set get the
    per-data-set table and the verdict (rule from ``--grid``)."""
    rows, headers, notes = [], [], []
    for runs_csv in runs_csvs:
        if not runs_csv.exists():
            raise ConfigError(f"{runs_csv}: no such runs file")
        rows += previous_rows(runs_csv)
        previous = runs_csv.with_name("table.md")
        parts = previous.read_text().split("\n\n") if previous.exists() else []
        headers += [parts[0]] if parts and parts[0].startswith("_Command") else []
        notes += [part for part in parts[2:] if part.startswith("Not trained")]
    datasets = list(dict.fromkeys(r.get("dataset") for r in rows if r.get("dataset")))
    if len(datasets) > 1:
        from benchmarks import recipe_verdict

        spec = read_grid(None if args.grid == "none" else Path(args.grid))
        rule = spec.get("rule") or {}
        seeds = len({r["seed"] for r in rows})
        summary = recipe_verdict.by_dataset(rows)
        table = recipe_verdict.markdown(rows, rule.get("threshold", recipe_verdict.THRESHOLD),
                                        rule.get("min_share", recipe_verdict.MIN_SHARE),
                                        planned_pairs=seeds * len(datasets))
    else:
        summary = summarise(rows)
        table = harness.markdown_table(summary, COLUMNS)
    body = "\n\n".join(headers + [table] + notes).strip()
    print(body)
    if args.markdown != "none":
        name = args.name or "study"
        update_markdown(Path(args.markdown), {f"recipe_study:{name}": body})
        print(f"table written to {args.markdown} (block recipe_study:{name})")
    return summary


if __name__ == "__main__":
    main()
