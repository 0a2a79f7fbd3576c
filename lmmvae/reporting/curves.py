"""Learning curves: a run's ``history.csv`` (written by :mod:`lmmvae.training.train`) as a figure, so a user
sees whether training converged: training and validation loss (``−ELBO / N``, or the GSNN loss)
against epoch, with the epoch whose weights were kept (best validation loss) marked.

    from lmmvae.reporting.curves import plot_history, read_history
    plot_history("runs/hm/history.csv", "runs/hm/curve.png")
    read_history("runs/hm/history.csv")   # best_epoch, epochs_run, stopped_early, ...
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lmmvae.errors import ConfigError  # noqa: E402
from lmmvae.reporting.figures import save  # noqa: E402


def load_history(history_csv: str | os.PathLike) -> pd.DataFrame:
    """``history.csv`` as a frame; a one-line error naming the file if it is missing or malformed."""
    path = Path(history_csv)
    if not path.exists():
        raise ConfigError(f"{path}: no such history file (written by `lmmvae fit` into the run directory)")
    frame = pd.read_csv(path)
    missing = [c for c in ("epoch", "train_loss", "val_loss") if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: not a training history (column(s) {', '.join(missing)} missing)")
    if frame.empty:
        raise ConfigError(f"{path}: the history is empty (no epoch finished)")
    return frame


def read_history(history_csv: str | os.PathLike, max_epochs: int | None = None) -> dict:
    """Summary of a run's history: ``best_epoch`` (the first epoch of least validation loss after
    the warm-up, the one :class:`lmmvae.training.train.Trainer` keeps), ``best_val_loss``, ``epochs_run``,
    ``warmup_epochs``, ``last_train_loss``, ``seconds`` (training time), ``stopped`` (why training
    ended: ``converged`` — patience ran out after the warm-up —, ``budget``, or ``unfinished``) and,
    given the run's epoch budget ``max_epochs``, ``stopped_early`` (``stopped == "converged"``).
    Histories written before the warm-up existed have no ``warmup``/``stopped`` columns: there
    every epoch counts, and a run that ended before its budget converged."""
    frame = load_history(history_csv)
    warmup = frame["warmup"].fillna(0).astype(int) if "warmup" in frame else pd.Series(0, index=frame.index)
    counted = frame[(warmup == 0) | (frame.index == frame.index[-1])]  # the last epoch counts if all are warm-up
    best = counted["val_loss"].idxmin()
    epochs_run = int(frame["epoch"].iloc[-1])
    out = {"best_epoch": int(frame["epoch"].loc[best]), "best_val_loss": float(frame["val_loss"].loc[best]),
           "epochs_run": epochs_run, "warmup_epochs": int(warmup.sum()),
           "last_train_loss": float(frame["train_loss"].iloc[-1]),
           "seconds": float(frame["seconds"].sum()) if "seconds" in frame else math.nan}
    if "stopped" in frame:
        last = frame["stopped"].iloc[-1]
        out["stopped"] = last if isinstance(last, str) and last else "unfinished"
    elif max_epochs is not None:
        out["stopped"] = "converged" if epochs_run < max_epochs else "budget"
    if max_epochs is not None:
        out["stopped_early"] = out.get("stopped") == "converged"
    return out


def plot_history(history_csv: str | os.PathLike, png: str | os.PathLike, title: str | None = None) -> Path:
    """Plot training and validation loss against epoch, the kept (best-validation) epoch marked by a
    vertical line; written to ``png`` atomically. Returns the path."""
    frame = load_history(history_csv)
    summary = read_history(history_csv)
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.plot(frame["epoch"], frame["train_loss"], label="train", color="tab:blue")
    ax.plot(frame["epoch"], frame["val_loss"], label="validation", color="tab:orange")
    ax.axvline(summary["best_epoch"], color="grey", linestyle="--", linewidth=1,
               label=f"best epoch {summary['best_epoch']} of {summary['epochs_run']}")
    losses = pd.concat([frame["train_loss"], frame["val_loss"]])
    finite = losses[losses.map(math.isfinite)]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 30:
        ax.set_yscale("log")  # a first epoch far above the rest would flatten the curve
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per row")
    ax.set_title(title or Path(history_csv).parent.name, fontsize=9)
    ax.legend(fontsize=8)
    save(fig, png)
    return Path(png)
