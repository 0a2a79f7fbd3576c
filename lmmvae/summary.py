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
* **latent diagnostics** (:mod:`lmmvae.diagnostics`): per latent dimension the mean KL over training
  rows (active when above 0.01 nats; needs the training data and an encoder) and the share of the
  latent variance the covariates explain, with a plain-words flag when the model looks collapsed;
* **notes**: what ``q(A)`` means after GSNN training (SPEC 4).

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

HISTORY = "history.csv"


@dataclass
class Summary:
    """A fitted model's summary (module docstring); ``str(summary)`` is the readable table."""

    model: dict[str, Any]
    fixed_effects: pd.DataFrame  # columns: term, latent, mean, sd
    random_effects: pd.DataFrame  # columns: term, group, column, latent, tau, sd_levels, n_levels
    noise: pd.DataFrame  # columns: parameter, value
    training: dict[str, Any] = field(default_factory=dict)
    # columns: latent, kl, active, explained_share (NaN where not defined: lmmvae.diagnostics)
    diagnostics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DIAGNOSTIC_COLUMNS))
    collapse: dict[str, Any] = field(default_factory=dict)  # active_dims, explained_share, collapsed, reasons
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
    from lmmvae.diagnostics import ACTIVE_KL_NATS

    if not len(frame) or frame[["kl", "explained_share"]].isna().all().all():
        return []
    lines = ["", "Latent diagnostics (training rows; kl: mean KL(q(z)||p(z|x)) in nats, active if > "
             f"{ACTIVE_KL_NATS}; explained_share: var(A^T x) / (var(A^T x) + noise variance))"]
    lines.append(frame.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}"))
    if collapse.get("reasons"):
        lines.append("The model looks collapsed: " + "; ".join(collapse["reasons"]) + ".")
    if collapse.get("active_dims") is None:
        lines.append("Active dimensions not computed: "
                     + ("no encoder after GSNN (SPEC 4)." if collapse.get("gsnn") else "training data not available."))
    return lines


def history_frame(run_dir: str | os.PathLike | None) -> pd.DataFrame:
    """The run's ``history.csv`` (one row per epoch: epoch, train_loss, val_loss, …) as a DataFrame."""
    from lmmvae.errors import RunError
    from lmmvae.reporting.curves import load_history

    if run_dir is None:
        raise RunError("this model has no run directory (fitted without out=): no training history")
    return load_history(Path(run_dir) / HISTORY)


def training_record(run_dir: str | os.PathLike | None, budget: int | None) -> dict[str, Any]:
    """Best epoch, its validation loss, epochs run, budget, stopped early (empty without a history)."""
    from lmmvae.reporting.curves import read_history

    if run_dir is None or not (Path(run_dir) / HISTORY).exists():
        return {}
    out = read_history(Path(run_dir) / HISTORY, budget)
    out["epoch_budget"] = budget
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}


def _latent_names(n: int) -> list[str]:
    return [f"z{l + 1}" for l in range(n)]


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _fixed_effects(fitted) -> pd.DataFrame:
    effects = getattr(fitted.model.prior, "effects", None)
    columns = ["term", "latent", "mean", "sd"]
    if effects is None or not fitted.design.n_shared:
        return pd.DataFrame(columns=columns)
    mean = _numpy(effects.shared_mean)  # [Q_s, L]
    sd = _numpy(effects.shared_log_std.exp()) if getattr(effects, "gaussian", False) else np.full_like(mean, np.nan)
    latents = _latent_names(mean.shape[1])
    rows = [(term, latents[l], mean[q, l], sd[q, l])
            for q, term in enumerate(fitted.design.shared_columns) for l in range(mean.shape[1])]
    return pd.DataFrame(rows, columns=columns)


def _random_effects(fitted) -> pd.DataFrame:
    prior = fitted.model.prior
    effects = getattr(prior, "effects", None)
    columns = ["term", "group", "column", "latent", "tau", "sd_levels", "n_levels"]
    if effects is None or not fitted.design.random_terms:
        return pd.DataFrame(columns=columns)
    taus = getattr(prior, "log_tau_random", None)
    rows = []
    for t, info in enumerate(fitted.design.random_terms):
        n_levels, n_cols = effects.term_shapes[t]
        latent = effects.latent_dim
        means = _numpy(effects.random_mean[t]).reshape(n_levels, n_cols, latent)  # [P, F, L]
        if taus is not None:  # oLMM, learned: one τ per column and latent dimension
            tau = _numpy(taus[t].exp()).reshape(n_cols, latent)
        elif hasattr(prior, "log_tau"):  # oLMM, fixed: τ_r
            tau = np.full((n_cols, latent), float(_numpy(prior.log_tau.exp())[1]))
        elif hasattr(prior, "tau_random"):  # sLMM: the MAP penalty's τ_r (SPEC 4)
            tau = np.full((n_cols, latent), float(_numpy(prior.tau_random)))
        else:
            tau = np.full((n_cols, latent), np.nan)
        spread = means.std(axis=0, ddof=1) if n_levels > 1 else np.full((n_cols, latent), np.nan)
        names = list(info.columns) if len(info.columns) == n_cols else [str(f) for f in range(n_cols)]
        for f in range(n_cols):
            for l, lname in enumerate(_latent_names(latent)):
                rows.append((info.name, info.group, names[f], lname, tau[f, l], spread[f, l], n_levels))
    return pd.DataFrame(rows, columns=columns)


def _noise(fitted) -> pd.DataFrame:
    prior, rows = fitted.model.prior, []
    if hasattr(prior, "sigma_z2"):
        for name, value in zip(_latent_names(prior.latent_dim), np.sqrt(_numpy(prior.sigma_z2).reshape(-1))
                               * np.ones(prior.latent_dim)):
            rows.append((f"sigma_z[{name}]", float(value)))
    if hasattr(prior, "sigma_eps2"):
        rows.append(("sigma_eps", float(np.sqrt(_numpy(prior.sigma_eps2)).reshape(-1)[0])))
    variance = getattr(fitted.model.likelihood, "variance", None)
    if variance is not None:
        var = _numpy(variance)
        rows += [("likelihood variance (mean over features)", float(var.mean())),
                 ("likelihood variance (min)", float(var.min())), ("likelihood variance (max)", float(var.max()))]
    return pd.DataFrame(rows, columns=["parameter", "value"])


def _n_train(fitted) -> int:
    covariates = getattr(fitted, "train_covariates", None) or {}
    return len(next(iter(covariates.values())).values) if covariates else 0


def _diagnostics(fitted, data) -> tuple[pd.DataFrame, dict]:
    """Per-dimension latent diagnostics and the collapse verdict (:mod:`lmmvae.diagnostics`)."""
    from lmmvae.checks import reads_encoder
    from lmmvae.diagnostics import ACTIVE_KL_NATS, collapse_flags, diagnose

    found = diagnose(fitted, data)
    latent = fitted.config.latent_dim
    nan = np.full(latent, np.nan)
    kl = found.kl if found.kl is not None else nan
    frame = pd.DataFrame({"latent": _latent_names(latent), "kl": kl,
                          "active": [None if np.isnan(v) else bool(v > ACTIVE_KL_NATS) for v in kl],
                          "explained_share": found.explained if found.explained is not None else nan})
    reasons = collapse_flags(found, latent)
    return frame, {"active_dims": found.active_dims, "explained_share": found.explained_share,
                   "collapsed": bool(reasons), "reasons": reasons, "gsnn": not reads_encoder(fitted.config)}


def _training_data(fitted, data):
    """``data``, else the run's data file when it is still there with its recorded size, else None."""
    if data is not None:
        return data
    path, size = fitted.info.get("data_path"), fitted.info.get("data_size")
    if path and Path(path).is_file() and (size is None or os.path.getsize(path) == size):
        from lmmvae.h5 import read_h5

        return read_h5(path)
    return None


def _gsnn_notes(fitted) -> list[str]:
    """What ``q(A)`` is after GSNN (SPEC 4), and whether its spread dwarfs the latent noise."""
    cfg, prior = fitted.config, fitted.model.prior
    effects = getattr(prior, "effects", None)
    if cfg.objective != "gsnn" or effects is None or not getattr(effects, "gaussian", False):
        return []
    notes = ["trained by GSNN: q(A) is the variational factor of a lower bound in which y enters only "
             "through the decoder likelihood (SPEC 4), not a posterior of A given latent codes; its sd is "
             "not a standard error of the effects"]
    if effects.shared_mean.shape[0] and hasattr(prior, "sigma_z2"):
        ratio = _numpy((2 * effects.shared_log_std).exp() / prior.sigma_z2)  # [Q_s, L]
        if float(ratio.mean()) > GSNN_WIDE_RATIO:
            notes.append(f"var(A)/sigma_z^2 is {ratio.mean():.3g} on average (max {ratio.max():.3g}): q(A) is "
                         "wider than the latent noise, and acts as noise injected in front of the decoder")
    return notes


#: a GSNN run's q(A) is called wide when its variance exceeds σ_z² on average (ratio above this)
GSNN_WIDE_RATIO = 1.0


def summarise(fitted, run_dir: str | os.PathLike | None = None, data=None) -> Summary:
    """The :class:`Summary` of a fitted neural model; ``run_dir`` (default: the model's own) for
    the training history; ``data`` (default: the run's data file if still there) for the active
    latent dimensions."""
    if not fitted.has_latent:  # mixedlm, mean (lmmvae.fitted): no latent prior; its per-feature table
        return fitted.summary()  # lmmvae.classical_summary
    cfg = fitted.config
    run_dir = run_dir if run_dir is not None else getattr(fitted, "run_dir", None)
    model = {"variant": cfg.variant, "objective": cfg.objective, "design": cfg.design, "latent_dim": cfg.latent_dim,
             "data_dim": int(fitted.info["data_dim"]), "image_shape": fitted.info.get("image_shape"),
             "likelihood": cfg.likelihood, "n_train": _n_train(fitted), "seed": fitted.info.get("seed")}
    diagnostics, collapse = _diagnostics(fitted, _training_data(fitted, data))
    return Summary(model, _fixed_effects(fitted), _random_effects(fitted), _noise(fitted),
                   training_record(run_dir, cfg.epochs), diagnostics, collapse, _gsnn_notes(fitted))


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
