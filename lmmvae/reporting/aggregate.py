"""Collect the metrics files of every run into one tidy table: ``results/metrics.csv``.

One row per run x metric. A run's metrics come from ``lmmvae evaluate`` (``metrics.json``); the
MCC between the latents of two seeds of one model comes from ``lmmvae mcc`` and is recorded as
metric ``mcc_seeds`` with both seeds (``seed``, ``seed_b``). The manifest, written by the workflow
from the config (:meth:`lmmvae.reporting.experiments.Plan.manifest`), says which file belongs to
which model and carries the labels that tables and figures need (base model, display label,
sweep parameter and value). Models with identical settings share one training (``training`` in the
manifest), so several entries may name the same file: each gives its own rows, same values.

A neural run's metrics file also says how its training ended (``best_epoch``, ``epochs_run``,
``epoch_budget``, ``stopped_early``: patience ended it before the budget); every row of the run
carries these, so that tables count the runs that converged vs hit the budget. Classical rows
(mixedlm, mean) have no epochs: empty.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from lmmvae.atomic import atomic_output
from lmmvae.errors import RunError

COLUMNS = [
    "dataset",
    "model",
    "base_model",
    "label",
    "sweep_parameter",
    "sweep_value",
    "seed",
    "seed_b",
    "variant",
    "objective",
    "latent_dim",
    "metric",
    "value",
]
#: how a run's training ended (lmmvae fit --evaluate-out / lmmvae evaluate); optional when reading,
#: so that a metrics table of an older run still reads (its tables then show no training column)
TRAINING_COLUMNS = ["best_epoch", "epochs_run", "epoch_budget", "stopped_early"]
_LABELS = ("dataset", "model", "base_model", "label", "sweep_parameter", "sweep_value")


def read_json(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no such {what} file (did the job that writes it run?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def aggregate(manifest: dict) -> pd.DataFrame:
    """The tidy metrics table of all runs and seed pairs listed in ``manifest``."""
    rows = []
    for run in manifest.get("runs", []):
        result = read_json(run["path"], "metrics")
        if "metrics" not in result:
            raise RunError(f"{run['path']}: no 'metrics' mapping (not written by lmmvae evaluate?)")
        for metric, value in result["metrics"].items():
            rows.append(_row(run, result, metric, value, seed_b=None))
    for pair in manifest.get("seed_pairs", []):
        result = read_json(pair["path"], "MCC")
        if "mcc" not in result:
            raise RunError(f"{pair['path']}: no 'mcc' value (not written by lmmvae mcc?)")
        run_result = read_json(pair["run_path"], "metrics")
        rows.append(_row(pair, run_result, "mcc_seeds", result["mcc"], seed_b=pair["seed_b"]))
    frame = pd.DataFrame(rows, columns=COLUMNS + TRAINING_COLUMNS)
    frame["seed_b"] = frame["seed_b"].astype("Int64")
    return _training_dtypes(frame)


def _training_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable integer / boolean columns: empty for classical rows, and round-trips through CSV."""
    for column in TRAINING_COLUMNS:
        if column not in frame:
            frame[column] = pd.NA
    for column in TRAINING_COLUMNS[:3]:
        frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    frame["stopped_early"] = frame["stopped_early"].map(_flag).astype("boolean")
    return frame


def _flag(value):
    """True / False as written by a JSON (bool) or read back from CSV ("True", 1.0); NA if unknown."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return pd.NA
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower(), pd.NA)
    return bool(value)


def _row(entry: dict, result: dict, metric: str, value, seed_b) -> dict:
    row = {key: entry.get(key) for key in _LABELS}
    if result.get("design_chosen"):  # mixedlm: the design chosen on validation rows (lmmvae.classical.family)
        row["label"] = f"{row['label']} [design chosen on validation: {result['design_chosen']}]"
    if row["sweep_value"] is not None:  # text, as read back from the CSV: 16, 0.5, "rbf"
        row["sweep_value"] = str(row["sweep_value"])
    row.update(
        seed=int(entry["seed"]),
        seed_b=seed_b,
        variant=result.get("variant"),
        objective=result.get("objective"),
        latent_dim=result.get("latent_dim"),
        metric=metric,
        value=float(value) if value is not None else float("nan"),
        **{key: result.get(key) for key in TRAINING_COLUMNS},
    )
    return row


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """``results/metrics.csv`` as written by :func:`write_csv` (sweep values as text)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such metrics table (run `lmmvae report aggregate`)")
    frame = pd.read_csv(path, dtype={"sweep_value": str, "sweep_parameter": str})
    missing = sorted(set(COLUMNS) - set(frame.columns))
    if missing:
        raise RunError(f"{path}: not a metrics table, column(s) {', '.join(missing)} missing")
    return _training_dtypes(frame)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` atomically (:func:`lmmvae.atomic.atomic_output`)."""
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False)
