"""What a fitted model says, as tables: ``model.summary()`` and ``lmmvae summary RUN``.

The table a ``statsmodels`` / lme4 user looks for, in the latent space of the model:

* **fixed effects**: the shared rows of ``A`` (SPEC 2.1), one row per design column and latent
  dimension, ``mean`` and ``sd`` under ``q(A)`` (SPEC 2.2; ``sd`` is NaN for a point estimate —
  ``q_A: point`` and sLMM-VAE, whose ``A`` is a parameter, SPEC 3.1);
* **random effects**: per random term, column and latent dimension, the prior std ``tau`` (learned
  or fixed, SPEC 2.1) and ``sd_levels``, the spread of the levels' posterior means (the empirical
  counterpart of ``tau``), with the number of levels;
* **noise**: ``σ_z`` per latent dimension (oLMM-VAE, SPEC 2.1) or ``σ_ε`` (sLMM-VAE, SPEC 3.1) and
  the likelihood's per-feature variance ``σ_d²`` (mean, min, max; Gaussian likelihoods);
* **training**: from the run's ``history.csv``: best epoch (the weights kept), its validation loss,
  epochs run of the budget, the warm-up, and why training stopped (``converged``: patience ran out
  after the warm-up; ``budget``: the epoch budget ended it, not converged);
* **latent diagnostics** (:mod:`lmmvae.answers.diagnostics`): per latent dimension the mean KL over training
  rows (active when above 0.01 nats; needs the training data and an encoder) and the share of the
  latent variance the covariates explain, with a plain-words flag when the model looks collapsed;
* **notes**: what ``q(A)`` means under the objective (after GSNN: SPEC 4).

The effects, variances, noise scales and notes are what the prior says of itself
(:meth:`lmmvae.model.priors.base.Prior.describe`): a new prior describes itself, or the summary says that it
gives no description.

Sections that do not apply to a variant (no ``A`` for the VAE, no history for a model fitted
without a run directory) are empty. :class:`Summary` prints as text; its parts are DataFrames.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmmvae.answers.diagnostics import ACTIVE_KL_NATS, collapse_flags, diagnose
from lmmvae.data.h5 import read_h5
from lmmvae.errors import RunError
from lmmvae.model.objective_kinds import objective_kind
from lmmvae.model.priors.describe import FIXED_COLUMNS, NOISE_COLUMNS, RANDOM_COLUMNS, PriorDescription

HISTORY = "history.csv"


@dataclass
class Summary:
    """A fitted model's summary (module docstring); ``str(summary)`` is the readable table."""

    model: dict[str, Any]
    fixed_effects: pd.DataFrame  # columns: term, latent, mean, sd
    random_effects: pd.DataFrame  # columns: term, group, column, latent, tau, sd_levels, n_levels
    noise: pd.DataFrame  # columns: parameter, value
    training: dict[str, Any] = field(default_factory=dict)
    # columns: latent, kl, active, explained_share (NaN where not defined: lmmvae.answers.diagnostics)
    diagnostics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DIAGNOSTIC_COLUMNS))
    collapse: dict[str, Any] = field(default_factory=dict)  # active_dims, explained_share, collapsed, reasons, no_encoder (the objective's label when it trains no encoder)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN as None)."""
        def records(frame):
            return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                    for row in frame.to_dict("records")]
        return {"model": self.model, "fixed_effects": records(self.fixed_effects),
                "random_effects": records(self.random_effects), "noise": records(self.noise),
                "training": self.training, "diagnostics": records(self.diagnostics),
                "collapse": self.collapse, "notes": list(self.notes)}

    def __str__(self) -> str:
        m = self.model
        data = f"{m['data_dim']} features" + (f" (images {'x'.join(map(str, m['image_shape']))})"
                                              if m.get("image_shape") else "")
        lines = [f"LMM-VAE model: {m['variant']} / {m['objective']}, design {m['design']!r}, "
                 f"latent {m['latent_dim']}, data {data}, likelihood {m['likelihood']}, "
                 f"{m['n_train']} training rows"]
        lines.append(_training_line(self.training))
        if len(self.fixed_effects):
            sd_known = self.fixed_effects["sd"].notna().any()
            lines.append("")
            lines.append("Fixed effects in latent space (" + ("mean ± sd under q(A))" if sd_known
                                                                else "point estimates of A)"))
            cell = self.fixed_effects.assign(
                text=[f"{a:.3f} ± {s:.3f}" if sd_known else f"{a:.3f}"
                      for a, s in zip(self.fixed_effects["mean"], self.fixed_effects["sd"])])
            wide = cell.pivot(index="term", columns="latent", values="text")
            wide = wide.reindex(index=list(dict.fromkeys(cell["term"])), columns=list(dict.fromkeys(cell["latent"])))
            wide.index.name, wide.columns.name = None, None
            lines.append(wide.to_string(line_width=100))
        if len(self.random_effects):
            lines.append("")
            lines.append("Random effects (tau: prior std; sd_levels: std of the levels' posterior means)")
            lines.append(self.random_effects.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if len(self.noise):
            lines.append("")
            lines.append("Noise scales")
            width = max(len(str(name)) for name in self.noise["parameter"])
            lines += [f"{name:<{width}}  {value:.4g}" for name, value in zip(self.noise["parameter"], self.noise["value"])]
        lines += _diagnostics_lines(self.diagnostics, self.collapse)
        if self.notes:
            lines.append("")
            lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython
        printer.text(str(self))


DIAGNOSTIC_COLUMNS = ["latent", "kl", "active", "explained_share"]
_STOPPED = {"converged": "converged: validation loss stopped improving for `patience` epochs after the warm-up",
            "budget": "hit the epoch budget: not converged", "unfinished": "unfinished"}


def _training_line(training: dict) -> str:
    if not training:
        return "Training: no history (fitted without a run directory)"
    how = _STOPPED.get(training.get("stopped"), "stopped early" if training.get("stopped_early") else "")
    warmup = f", warm-up {training['warmup_epochs']} epochs" if training.get("warmup_epochs") else ""
    return (f"Training: best epoch {training['best_epoch']} of {training['epochs_run']} "
            f"(budget {training['epoch_budget']}{warmup}; {how}); validation loss {training['best_val_loss']:.5g}, "
            f"last training loss {training['last_train_loss']:.5g}")


def _diagnostics_lines(frame: pd.DataFrame, collapse: dict) -> list[str]:
    if not len(frame) or frame[["kl", "explained_share"]].isna().all().all():
        return []
    lines = ["", "Latent diagnostics (training rows; kl: mean KL(q(z)||p(z|x)) in nats, active if > "
             f"{ACTIVE_KL_NATS}; explained_share: var(A^T x) / (var(A^T x) + noise variance))"]
    lines.append(frame.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}"))
    if collapse.get("reasons"):
        lines.append("The model looks collapsed: " + "; ".join(collapse["reasons"]) + ".")
    if collapse.get("active_dims") is None:
        lines.append("Active dimensions not computed: "
                     + (f"no encoder after {collapse['no_encoder']} (SPEC 4)." if collapse.get("no_encoder")
                        else "training data not available."))
    return lines


def history_frame(run_dir: str | os.PathLike | None) -> pd.DataFrame:
    """The run's ``history.csv`` (one row per epoch: epoch, train_loss, val_loss, …) as a DataFrame."""
    from lmmvae.reporting.curves import load_history  # here: that module imports matplotlib, kept out of lmmvae.api

    if run_dir is None:
        raise RunError("this model has no run directory (fitted without out=): no training history")
    return load_history(Path(run_dir) / HISTORY)


def training_record(run_dir: str | os.PathLike | None, budget: int | None) -> dict[str, Any]:
    """Best epoch, its validation loss, epochs run, budget, stopped early (empty without a history)."""
    from lmmvae.reporting.curves import read_history  # here: that module imports matplotlib, kept out of lmmvae.api

    if run_dir is None or not (Path(run_dir) / HISTORY).exists():
        return {}
    out = read_history(Path(run_dir) / HISTORY, budget)
    out["epoch_budget"] = budget
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}


def _latent_names(n: int) -> list[str]:
    return [f"z{l + 1}" for l in range(n)]


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _prior_tables(fitted) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """Fixed effects, random effects, noise scales and notes, as the prior describes itself
    (:meth:`lmmvae.model.priors.base.Prior.describe`); the likelihood's variances join the noise table.
    A prior that gives no description gets a note saying so, never silently empty tables."""
    prior = fitted.model.prior
    described = prior.describe(fitted.design, objective_kind(fitted.config.objective))
    notes = []
    if described is None:
        described = PriorDescription()
        notes.append(f"the prior ({type(prior).__name__}) gives no description (Prior.describe): its "
                     "effects and variances are not shown")
    noise = list(described.noise)
    variance = getattr(fitted.model.likelihood, "variance", None)
    if variance is not None:
        var = _numpy(variance)
        noise += [("likelihood variance (mean over features)", float(var.mean())),
                  ("likelihood variance (min)", float(var.min())), ("likelihood variance (max)", float(var.max()))]
    return (pd.DataFrame(described.fixed_effects, columns=FIXED_COLUMNS),
            pd.DataFrame(described.random_effects, columns=RANDOM_COLUMNS),
            pd.DataFrame(noise, columns=NOISE_COLUMNS), notes + list(described.notes))


def _n_train(fitted) -> int:
    covariates = getattr(fitted, "train_covariates", None) or {}
    return len(next(iter(covariates.values())).values) if covariates else 0


def _diagnostics(fitted, data) -> tuple[pd.DataFrame, dict]:
    """Per-dimension latent diagnostics and the collapse verdict (:mod:`lmmvae.answers.diagnostics`)."""
    found = diagnose(fitted, data)
    kind = objective_kind(fitted.config.objective)
    latent = fitted.config.latent_dim
    nan = np.full(latent, np.nan)
    kl = found.kl if found.kl is not None else nan
    frame = pd.DataFrame({"latent": _latent_names(latent), "kl": kl,
                          "active": [None if np.isnan(v) else bool(v > ACTIVE_KL_NATS) for v in kl],
                          "explained_share": found.explained if found.explained is not None else nan})
    reasons = collapse_flags(found, latent)
    return frame, {"active_dims": found.active_dims, "explained_share": found.explained_share,
                   "collapsed": bool(reasons), "reasons": reasons, "no_encoder": None if kind.trains_encoder else kind.label}


def _training_data(fitted, data):
    """``data``, else the run's data file when it is still there with its recorded size, else None."""
    if data is not None:
        return data
    path, size = fitted.info.get("data_path"), fitted.info.get("data_size")
    if path and Path(path).is_file() and (size is None or os.path.getsize(path) == size):
        return read_h5(path)
    return None


def summarise(fitted, run_dir: str | os.PathLike | None = None, data=None) -> Summary:
    """The :class:`Summary` of a fitted neural model; ``run_dir`` (default: the model's own) for
    the training history; ``data`` (default: the run's data file if still there) for the active
    latent dimensions."""
    if not fitted.has_latent:  # mixedlm, mean (lmmvae.fitted): no latent prior; its per-feature table
        return fitted.summary()  # lmmvae.classical.summary
    cfg = fitted.config
    run_dir = run_dir if run_dir is not None else getattr(fitted, "run_dir", None)
    model = {"variant": cfg.variant, "objective": cfg.objective, "design": cfg.design, "latent_dim": cfg.latent_dim,
             "data_dim": int(fitted.info["data_dim"]), "image_shape": fitted.info.get("image_shape"),
             "likelihood": cfg.likelihood, "n_train": _n_train(fitted), "seed": fitted.info.get("seed")}
    diagnostics, collapse = _diagnostics(fitted, _training_data(fitted, data))
    fixed, random, noise, notes = _prior_tables(fitted)
    return Summary(model, fixed, random, noise, training_record(run_dir, cfg.epochs), diagnostics, collapse, notes)


def describe(fitted) -> str:
    """One line saying what the model is (``repr``): variant, objective, design, sizes, training."""
    cfg = fitted.config
    if not fitted.has_latent:  # mixedlm, mean (lmmvae.fitted): the model's own line
        return repr(fitted)
    text = (f"<LMMVAE {cfg.variant}/{cfg.objective}, design {cfg.design!r}, latent {cfg.latent_dim}, "
            f"{fitted.info['data_dim']} features")
    if fitted.info.get("image_shape"):
        text += f" (images {'x'.join(map(str, fitted.info['image_shape']))})"
    try:
        training = training_record(getattr(fitted, "run_dir", None), cfg.epochs)
    except Exception:  # a repr never raises: a malformed history only drops the part it would say
        training = {}
    if training:
        text += f", trained {training['epochs_run']} epochs (best {training['best_epoch']})"
    run_dir = getattr(fitted, "run_dir", None)
    return text + (f", run {str(run_dir)!r}>" if run_dir is not None else ">")
