"""Run directories: the one validation layer for ``lmmvae fit --out`` and ``lmmvae.load``.

A run directory holds ``config.json`` (model config, seed, data summary), ``design.json`` (the
fitted design), ``prior.json`` (the variant's summary of the training split, :mod:`lmmvae.model.variants`),
``covariates.json`` (kinds, levels and values of the training covariates), ``history.csv``,
``checkpoint.pt`` (by time, :mod:`lmmvae.training.train`; for ``--resume``) and, written last, ``model.pt``. A model is
rebuilt from the JSON files and ``model.pt`` alone (:mod:`lmmvae.training.assemble`); no data are read.
This module writes them, decides what ``fit`` may do with an existing run directory, and reads one
back with one-line :class:`RunError` s:

- ``--out`` naming a file, or a directory holding anything but run files: refused.
- a finished run (``model.pt``): refused unless ``overwrite``; then the new run trains in a hidden
  staging directory beside it and replaces the old one only once complete, so a failed or killed
  retraining never loses the finished model.
- ``resume`` with another config, seed or data file (SHA-256 and size recorded in ``config.json``):
  refused.
- training that fails before its first checkpoint leaves nothing behind.
- reading: a damaged ``config.json`` / ``design.json``, a truncated or foreign ``model.pt`` (always
  ``torch.load(weights_only=True)``), weights that do not fit the config: one line each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lmmvae.atomic import atomic_output, write_text
from lmmvae.data.h5 import Covariate
from lmmvae.errors import DataFormatError, DesignError, RunError
from lmmvae.model.design import FittedDesign
from lmmvae.runs.paths import CHECKPOINT_FILE, COVARIATES_FILE, MODEL_FILE, PRIOR_FILE, RUN_FILES


# -- data identity --------------------------------------------------------------------------------


def data_fingerprint(data, path: str | os.PathLike | None) -> dict:
    """``{"data_sha256", "data_size"}``: of the file's bytes when read from ``path``, else of the
    in-memory arrays (y, mask, split, covariates). ``--resume`` compares it with the run's."""
    digest = hashlib.sha256()
    if path is not None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return {"data_sha256": digest.hexdigest(), "data_size": os.path.getsize(path)}
    size = 0
    arrays = [data.y, data.mask, data.split]
    for name in sorted(data.covariates):
        cov = data.covariates[name]
        digest.update(f"{name}:{cov.kind}:{json.dumps(cov.levels, default=str)}".encode())
        arrays.append(cov.values)
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(str(arr.shape).encode())
        digest.update(arr.view(np.uint8).reshape(-1) if arr.size else b"")
        size += arr.nbytes
    return {"data_sha256": digest.hexdigest(), "data_size": size}


# -- writing --------------------------------------------------------------------------------------


def _json(value, run_dir: Path, what: str) -> str:
    try:  # strict JSON: a non-finite value (an overflowed statistic) is an error, never "Infinity"
        return json.dumps(value, indent=2, allow_nan=False)
    except ValueError as err:
        raise RunError(f"{run_dir}: the run's {what} holds a non-finite number ({err})") from None


def write_run_files(run_dir: Path, config, design, covariates: dict, info: dict, prior: dict | None = None) -> None:
    """``config.json``, ``design.json``, ``covariates.json`` and (neural runs) ``prior.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    texts = {"config.json": _json({"model": config.to_dict(), "info": info}, run_dir, "config"),
             "design.json": _json(design.to_dict(), run_dir, "design"),
             COVARIATES_FILE: _json({name: _covariate_record(c) for name, c in covariates.items()}, run_dir,
                                    "covariates")}
    if prior is not None:
        texts[PRIOR_FILE] = _json(prior, run_dir, "prior summary")
    for name, text in texts.items():
        write_text(text, run_dir / name)


def _covariate_record(cov) -> dict:
    """A training covariate as JSON: kind, levels, and the values (codes, or floats with ``null`` for
    a non-finite one), which prediction helpers read (reference values, grids, seen levels)."""
    if cov.is_coded:
        values = [int(v) for v in cov.values]
    else:
        values = [float(v) if np.isfinite(v) else None for v in cov.values]
    return {"kind": cov.kind, "levels": cov.levels, "values": values}


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: a killed job never leaves a partial file."""
    import torch

    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def write_model(model, run_dir: Path) -> Path:
    """``model.pt``: the weights (tensors only, read back with ``weights_only=True``), written last."""
    atomic_save(model.state_dict(), run_dir / MODEL_FILE)
    return run_dir / MODEL_FILE


def same_model(saved: dict, config: dict) -> bool:
    """Whether a run's saved model config and ``config`` describe the same training. The device is
    where a run trains, not what it trains: a run checkpointed on one device resumes on another."""
    return {k: v for k, v in saved.items() if k != "device"} == {k: v for k, v in config.items() if k != "device"}


def stale_reason(out: Path, config: dict, seed: int, data_sha256: str | None) -> str | None:
    """The one rule for resuming: why the run in ``out`` (its ``config.json``) cannot be resumed with
    this config, seed and data file (``"another config"``, ``"another seed"``, ``"other data"``), or
    None when it can. A data hash of None (not known) is not compared."""
    saved = read_config(out)
    if not same_model(saved["model"], config):
        return "another config"
    if saved["info"].get("seed") != seed:
        return "another seed"
    old = saved["info"].get("data_sha256")
    if old is not None and data_sha256 is not None and old != data_sha256:
        return "other data"
    return None


class RunPlan:
    """Where ``fit`` writes (``train_dir``) and how the run directory ``out`` ends up.

    ``start`` checks a resumed run against its config, seed and data, clears a stale unfinished
    run when starting afresh, then lets the caller write the run files; ``commit`` moves a staged
    run into place; ``abort`` removes what this call created when training fails.
    """

    def __init__(self, out: Path, resume: bool, overwrite: bool):
        self.out, self.resume, self.overwrite = out, resume, overwrite
        self.existed = out.exists() and any(_entries(out))
        self.finished = (out / MODEL_FILE).exists()
        self.staged = self.finished and overwrite
        self.train_dir = out.with_name(f".{out.name}.new-{os.getpid()}") if self.staged else out

    def start(self, config: dict, seed: int, info: dict, write) -> None:
        if self.staged:
            shutil.rmtree(self.train_dir, ignore_errors=True)
        elif self.resume and (self.out / "config.json").exists():
            reason = stale_reason(self.out, config, seed, info.get("data_sha256"))
            if reason in ("another config", "another seed"):
                raise RunError(f"{self.out}: holds a run with another config or seed; use another --out, "
                               "or --overwrite to replace it")
            if reason == "other data":
                saved = read_config(self.out)
                old = saved["info"]["data_sha256"]
                raise RunError(
                    f"{self.out}: was trained on {saved['info'].get('data_path') or 'other data'} "
                    f"(sha256 {old[:12]}, {saved['info'].get('data_size')} bytes), not on "
                    f"{info.get('data_path') or 'these data'} (sha256 {info['data_sha256'][:12]}); resume with "
                    "the same data, or use --overwrite to retrain")
        elif not self.resume:
            for name in (CHECKPOINT_FILE, "history.csv"):  # an unfinished run's: starting afresh
                (self.out / name).unlink(missing_ok=True)
        self.train_dir.mkdir(parents=True, exist_ok=True)
        write(self.train_dir)

    def commit(self) -> None:
        if not self.staged:
            return
        old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
        os.replace(self.out, old)
        os.replace(self.train_dir, self.out)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self, interrupted: bool = False) -> None:
        """After a failure: drop a staging directory; drop a new run that never checkpointed
        (a killed run that did checkpoint stays, for ``--resume``)."""
        if self.staged:
            shutil.rmtree(self.train_dir, ignore_errors=True)
        elif not self.existed and not (self.out / CHECKPOINT_FILE).exists() and not interrupted:
            shutil.rmtree(self.out, ignore_errors=True)


def prepare(out: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> RunPlan:
    """Check ``out`` before any work: a one-line RunError if ``fit`` must not write there."""
    out = Path(out)
    if resume and overwrite:
        raise RunError(f"{out}: --resume and --overwrite contradict each other; pass one")
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a directory; --out names the run directory to write")
    if out.is_dir():
        foreign = sorted(n for n in _entries(out) if n not in RUN_FILES)
        if foreign:
            raise RunError(f"{out}: is not a run directory (it holds {', '.join(foreign[:3])}"
                           f"{', ...' if len(foreign) > 3 else ''}); choose another --out")
        if (out / MODEL_FILE).exists() and not (resume or overwrite):
            raise RunError(f"{out}: holds a finished run (model.pt); pass --overwrite (overwrite=True) to "
                           "replace it once the new one is complete, or choose another --out")
    return RunPlan(out, resume, overwrite)


def _entries(directory: Path) -> list[str]:
    """Names in ``directory``, without hidden temporaries (``.model.pt.123.tmp``)."""
    try:
        return [p.name for p in directory.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []


# -- reading --------------------------------------------------------------------------------------


def require_finished(run_dir: Path, files: tuple[str, ...] = ("config.json", "design.json", MODEL_FILE)) -> None:
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory; train one with `lmmvae fit`")
    for name in files:
        if not (run_dir / name).exists():
            raise RunError(f"{run_dir}: not a finished run ({name} missing); train it with `lmmvae fit`")


def read_json(path: Path, missing: str | None = None) -> Any:
    """The JSON file ``path``; damaged is a one-line RunError, and so is absent when ``missing`` says
    why a run may lack it."""
    if missing is not None and not path.exists():
        raise RunError(f"{path}: missing ({missing}); retrain the run with `lmmvae fit --overwrite`")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path}: damaged ({type(err).__name__}: {str(err).splitlines()[0][:100]}); "
                       "retrain the run with `lmmvae fit --overwrite`") from None


def read_config(run_dir: Path) -> dict:
    """``config.json`` with its ``model`` and ``info`` mappings checked."""
    path = run_dir / "config.json"
    saved = read_json(path)
    info = saved.get("info") if isinstance(saved, dict) else None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict) or not isinstance(info, dict):
        raise RunError(f"{path}: not a run config (needs the mappings 'model' and 'info'); retrain the run")
    dim = info.get("data_dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise RunError(f"{path}: info.data_dim must be a positive integer, got {dim!r}; retrain the run")
    shape = info.get("image_shape")
    if shape is not None and not (isinstance(shape, list) and all(isinstance(s, int) and s > 0 for s in shape)
                                  and int(np.prod(shape)) == dim):
        raise RunError(f"{path}: info.image_shape {shape!r} does not match data_dim {dim}; retrain the run")
    return saved


def read_design(run_dir: Path):
    path = run_dir / "design.json"
    saved = read_json(path)
    try:
        return FittedDesign.from_dict(saved)
    except DesignError as err:
        raise RunError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise RunError(f"{path}: not a saved design ({type(err).__name__}: {str(err)[:80]}); retrain the run") from None


def read_prior(run_dir: Path) -> dict:
    """``prior.json``: the variant's summary of the training split."""
    path = run_dir / PRIOR_FILE
    summary = read_json(path, missing="a run written before prior summaries were saved")
    if not isinstance(summary, dict):
        raise RunError(f"{path}: not a prior summary (a JSON mapping); retrain the run")
    return summary


def read_covariates(run_dir: Path) -> dict:
    """``covariates.json`` as ``{name: Covariate}``: the training covariates' kinds, levels and values."""
    path = run_dir / COVARIATES_FILE
    saved = read_json(path, missing="a run written before covariates.json")
    try:
        return {name: Covariate(np.array(c["values"], dtype=float), c["kind"], c["levels"])
                for name, c in saved.items()}
    except (AttributeError, KeyError, TypeError, DataFormatError) as err:
        raise RunError(f"{path}: not a covariate record ({type(err).__name__}: {str(err)[:80]}); retrain the run") from None


def read_weights(path: Path) -> dict:
    """A state dict of tensors, read with ``torch.load(weights_only=True)``."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, garbage, a pickle with code: all unreadable
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise RunError(f"{path}: unreadable ({type(err).__name__}: {reason}); retrain the run "
                       "with `lmmvae fit --overwrite`") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunError(f"{path}: not a model state dict (name -> tensor); retrain the run")
    return state


def load_weights(model, path: Path) -> None:
    """``model.load_state_dict`` from ``path``; weights of another model are a one-line RunError."""
    state = read_weights(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else ""
        raise RunError(f"{path}: does not match its config.json ({detail[:160]}); retrain the run") from None
