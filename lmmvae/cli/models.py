"""`lmmvae fit | evaluate | mcc`: the commands the workflow calls (`predict`: lmmvae/cli/answers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lmmvae.atomic import hdf5_output, write_text
from lmmvae.cli import argtypes as T


def register(subparsers) -> None:
    p = subparsers.add_parser("fit", help="train a model on a longitudinal HDF5 file")
    p.add_argument("--data", required=True, help="longitudinal HDF5 file (docs/data_format.md; lmmvae data from-table makes one)")
    p.add_argument("--model", required=True, help="model YAML (keys: docs/configuration.md)")
    p.add_argument("--seed", type=T.SEED, default=0, help="random seed of initialisation and minibatches (default 0)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (overrides the YAML)")
    T.add_threads(p)
    p.add_argument("--epochs", type=T.EPOCHS, default=None, help="override the YAML's epochs")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt if present")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (the old one stays until the new one is complete)")
    p.add_argument("--restart-stale", action="store_true",
                   help="with --resume: an unfinished run of another config, seed or data in --out is started "
                        "afresh instead of refused (the workflow's rerun after an edit)")
    p.add_argument("--evaluate-out", default=None, metavar="JSON",
                   help="then evaluate on --data in the same process: the metrics JSON of `lmmvae evaluate --out`")
    p.add_argument("--predictions-out", default=None, metavar="HDF5",
                   help="with --evaluate-out: also the predictions of `lmmvae evaluate --predictions`")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_fit)

    p = subparsers.add_parser("evaluate", help="MSE / NLL / MCC of a finished run (docs/model.md, Metrics)")
    T.add_run(p)
    p.add_argument("--data", required=True, help="longitudinal HDF5 file to score (its test split)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--predictions", default=None, help="also write predictions (HDF5)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    T.add_threads(p)
    p.set_defaults(handler=_evaluate)

    p = subparsers.add_parser("mcc", help="mean correlation coefficient between two runs' latents")
    p.add_argument("runs", nargs=2, metavar="RUN", help="two run directories (e.g. two seeds of one model)")
    p.add_argument("--data", required=True, help="longitudinal HDF5 file whose rows are embedded")
    p.add_argument("--out", default=None, help="JSON to write (default: print)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    T.add_threads(p)
    p.set_defaults(handler=_mcc)


def _fit(args) -> int:
    from lmmvae.api import fit
    from lmmvae.errors import ConfigError
    from lmmvae.training.checks import config_from_yaml

    data_file(args.data)
    config = config_from_yaml(args.model)
    if args.device:
        config.device = args.device
    if args.epochs:
        config.epochs = args.epochs
    if args.predictions_out and not args.evaluate_out:
        raise ConfigError("--predictions-out needs --evaluate-out (predictions are written by the evaluation)")
    resume = args.resume
    if resume and args.restart_stale:
        stale = _stale_run(Path(args.out), config.to_dict(), args.seed, args.data)
        if stale:
            print(f"lmmvae: stale checkpoint in {args.out} ({stale}): starting afresh")
            resume = False
    fitted = fit(args.data, out=args.out, seed=args.seed, resume=resume, progress=not args.quiet, config=config,
                 overwrite=args.overwrite, threads=args.threads)
    if not fitted.trained_by_epochs:  # mixedlm, mean (lmmvae.classical.family): refitted, never resumed
        print(f"lmmvae: fitted {config.variant} ({fitted.info['data_dim']} features) -> {args.out}{fitted.fit_note()}")
    else:
        from lmmvae.reporting.curves import read_history

        run = read_history(Path(args.out) / "history.csv", config.epochs)
        how = "stopped early" if run["stopped_early"] else "hit the epoch budget: not converged"
        print(f"lmmvae: trained {config.variant}/{config.objective} -> {args.out} (device {fitted.device}); "
              f"best epoch {run['best_epoch']} of {run['epochs_run']} ({how}), "
              f"validation loss {run['best_val_loss']:.4g}")
    if args.evaluate_out:  # same process: no second interpreter, torch import and model load
        from lmmvae.data.h5 import read_h5

        _evaluate_fitted(fitted, read_h5(args.data), args.data, args.out, args.evaluate_out, args.predictions_out)
    return 0


#: what a table file is called by its suffix (lmmvae data from-table reads these)
_TABLES = {".csv": "a CSV table", ".tsv": "a TSV table", ".txt": "a text table", ".parquet": "a Parquet table",
           ".h5ad": "an AnnData file"}


def data_file(path: str, flag: str = "--data") -> str:
    """``path`` when it may be a longitudinal HDF5 file; a table given instead (by its suffix, or
    text / Parquet content without the HDF5 signature) is a one-line error naming the command
    that converts it (docs/data_format.md), not h5py's 'file signature not found'."""
    import h5py

    from lmmvae.errors import DataFormatError

    file = Path(path)
    what = _TABLES.get(file.suffix.lower())
    if what is None and file.is_file() and not h5py.is_hdf5(file):
        with open(file, "rb") as f:
            head = f.read(4096)
        what = ("a Parquet table" if head.startswith(b"PAR1") else
                "a text table" if head and b"\0" not in head and any(c in head for c in (b",", b"\t", b";")) else None)
    if what is None:
        return path
    raise DataFormatError(f"{flag} {path}: is {what}, not a longitudinal HDF5 data file; convert it first: "
                          f"lmmvae data from-table --table {path} --subject COL --time COL "
                          f"--out {file.with_suffix('.h5').name}")


def _stale_run(out: Path, config: dict, seed: int, data: str) -> str | None:
    """Why the unfinished run in ``out`` cannot be resumed with these settings (another config, seed
    or data file, or an unreadable config.json), or None when it can (or there is none)."""
    from lmmvae.errors import RunError
    from lmmvae.runs import rundir

    if not (out / "config.json").exists() or (out / rundir.MODEL_FILE).exists():
        return None
    sha = rundir.data_fingerprint(None, data)["data_sha256"] if Path(data).exists() else None
    try:
        return rundir.stale_reason(out, config, seed, sha)  # the rule the resumed fit applies
    except RunError:
        return "unreadable config.json"


def _write_json(obj, path: str) -> None:
    write_text(json.dumps(obj, indent=2, sort_keys=True), path)


def _write_arrays(arrays: dict[str, np.ndarray], path: str) -> None:
    with hdf5_output(path) as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value, compression="gzip" if value.ndim == 2 and value.size > 4096 else None)


def _evaluate(args) -> int:
    from lmmvae.api import load
    from lmmvae.data.h5 import read_h5

    run = T.run_dir(args, "lmmvae evaluate RUN --data FILE.h5 --out metrics.json")
    data = read_h5(data_file(args.data))
    fitted = load(run, device=args.device, threads=args.threads)
    _evaluate_fitted(fitted, data, args.data, run, args.out, args.predictions)
    return 0


def _evaluate_fitted(fitted, data, data_path: str, run: str, out: str, predictions_path: str | None) -> None:
    """Metrics JSON (and predictions HDF5) of a fitted model: ``lmmvae evaluate``, ``fit --evaluate-out``."""
    from lmmvae.answers.evaluate import evaluate
    from lmmvae.errors import DataFormatError

    if not data.mask.any():
        raise DataFormatError(f"{data_path}: every entry is missing (/mask is all 0): nothing to evaluate")
    predictions = {} if predictions_path else None
    metrics = evaluate(fitted, data, predictions)  # every family (lmmvae.fitted): the same metric keys where they apply
    cfg = fitted.config
    epochs = fitted.trained_by_epochs  # classical rows: no objective, no latent, no epochs
    _write_json({"metrics": metrics, "variant": cfg.variant, "objective": cfg.objective if epochs else None,
                 "latent_dim": cfg.latent_dim if fitted.has_latent else None, "design": cfg.design,
                 "seed": fitted.info.get("seed"), "dataset": data.name, "run": str(run),
                 **_training(run, cfg.epochs if epochs else None),
                 **({"design_chosen": fitted.design_chosen} if fitted.design_chosen else {})}, out)
    if predictions_path:
        predictions["split"] = data.split
        _write_arrays(predictions, predictions_path)
    print(" ".join(f"{k}={v:.5g}" for k, v in metrics.items()) or "no metric applies")


def _training(run: str, budget: int | None) -> dict:
    """How a neural run's training ended, from RUN/history.csv and the config's epoch budget:
    ``best_epoch`` (the weights kept), ``epochs_run``, ``epoch_budget`` and ``stopped_early`` (patience
    ended it before the budget: converged). All None for a classical row (``budget`` None), which
    has no epochs; the tables count the runs that stopped early vs hit the budget from these."""
    if budget is None:
        return {"best_epoch": None, "epochs_run": None, "epoch_budget": None, "stopped_early": None}
    from lmmvae.reporting.curves import read_history

    run_info = read_history(Path(run) / "history.csv", budget)
    return {"best_epoch": run_info["best_epoch"], "epochs_run": run_info["epochs_run"], "epoch_budget": int(budget),
            "stopped_early": bool(run_info["stopped_early"])}


def _mcc(args) -> int:
    from lmmvae.answers.metrics import mcc
    from lmmvae.answers.predict import latent_means
    from lmmvae.api import load
    from lmmvae.data.h5 import read_h5
    from lmmvae.errors import RunError
    from lmmvae.errors import DataFormatError
    from lmmvae.training.checks import reads_encoder

    data = read_h5(data_file(args.data))
    if data.n_obs == 0:
        raise DataFormatError(f"{args.data}: has no rows: no latents to correlate")
    latents = []
    for run in args.runs:
        fitted = load(run, device=args.device, threads=args.threads)
        if not fitted.has_latent:
            raise RunError(f"{run}: {fitted.config.variant} is a classical model without a latent space: no MCC")
        if not reads_encoder(fitted.config):  # GSNN (SPEC 4)
            raise RunError(f"{run}: trained with GSNN, which has no latent posterior (docs/model.md, GSNN): no MCC")
        latents.append(latent_means(fitted, data))
    value = mcc(*latents)
    result = {"mcc": value, "runs": list(args.runs)}
    if args.out:
        _write_json(result, args.out)
    print(f"mcc={value:.4f}")
    return 0

