"""One trainer for every model: Adam (+ SparseAdam for random-effect tables), exponential learning
rate decay, best-validation weights, checkpoints by time, resume, ``history.csv``, progress bar.

Model selection reads the validation split only (never test). Without validation rows the training
loss is used.

Convergence (docs/model.md, "Warm-up and convergence"): during the first ``warmup_epochs`` epochs
the likelihood follows its warm-up schedule (the tabular Gaussian variance under a rising ceiling)
and no epoch is kept or counted by early stopping; a run **converged** when, after the warm-up, the
validation loss has not improved for ``patience`` epochs, and otherwise ends on its **budget**
(``epochs``). The validation pass uses common random numbers: the same Monte Carlo draws every
epoch (a fixed seed inside ``torch.random.fork_rng``, so the training stream and a resumed run are
unaffected), and GSNN validation uses ``gsnn_val_samples`` draws: early stopping reads the change
of the model, not the noise of the estimate.

Checkpoints (``checkpoint.pt`` and ``history.csv``) are written by time, not every epoch: at the end
of the first epoch, then at the end of the first epoch that finishes ``CHECKPOINT_SECONDS`` or more
after the last write, and always when training ends (converged or budget). Each checkpoint holds the
random states at the end of its epoch, so a run resumed from an older checkpoint replays the epochs
after it exactly: the weights and the history are those of an uninterrupted run (a killed run loses
at most ``CHECKPOINT_SECONDS`` of training, redone on resume).
"""

from __future__ import annotations

import copy
import csv
import math
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from lmmvae.atomic import atomic_output
from lmmvae.config import ModelConfig
from lmmvae.data.loader import TensorData
from lmmvae.errors import LmmvaeWarning
from lmmvae.model.latent import LatentVariableModel
from lmmvae.model.objective_kinds import sample_kwargs
from lmmvae.progress import progress
from lmmvae.runs.rundir import atomic_save
from lmmvae.training.objectives import get_objective

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = {"model", "optimizers", "schedulers", "state", "generator", "torch_rng"}
HISTORY = "history.csv"
#: learning rate of the random-effect rows of A relative to ``lr`` when ``lr_random_effects`` is null:
#: a subject's rows move only in the steps that hold the subject. Chosen on validation prediction
#: MSE of the simulated LMM data (docs/recipe_study.md: factor 10 converged sooner and lower than 1).
RANDOM_EFFECTS_LR_FACTOR = 10.0
#: learning rate of the likelihood's parameters relative to ``lr`` when ``lr_likelihood`` is null.
LIKELIHOOD_LR_FACTOR = 1.0
#: why training stopped (TrainState.stopped, the last row of history.csv): patience ran out after
#: the warm-up (converged), or the epoch budget was spent (budget)
CONVERGED, BUDGET = "converged", "budget"
#: seed of the validation pass's draws: the same every epoch (common random numbers)
VALIDATION_SEED = 20_240_601
#: seconds between two checkpoint writes (module docstring). Writing every epoch took 9-11 % of the
#: default run's trial and Health MNIST epochs, more as the history grows (benchmarks/profile_fit.py,
#: BENCHMARKS.md "Where a fit's time goes"); ``Trainer.checkpoint_seconds = 0`` writes every epoch
CHECKPOINT_SECONDS = 30.0
#: Adam's multi-tensor implementation (``foreach``) on every device (Trainer.__init__)
ADAM_FOREACH = True
HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "reconstruction", "kl_local", "kl_global", "lr", "seconds",
                  "warmup", "likelihood_variance", "stopped"]


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    history: list[dict] = field(default_factory=list)
    stopped: str = ""  # "" while running; CONVERGED or BUDGET once fit() has ended


class Trainer:
    checkpoint_seconds: float = CHECKPOINT_SECONDS  # per instance: 0 writes every epoch

    def __init__(self, model: LatentVariableModel, data: TensorData, config: ModelConfig,
                 generator: torch.Generator, run_dir: Path | None = None, progress: bool = True):
        self.model, self.data, self.config = model, data, config
        self.generator = generator
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.objective = get_objective(config.objective)
        self.objective_kwargs = sample_kwargs(config)  # GSNN: gsnn_samples draws per row (SPEC 4)
        self.validation_kwargs = sample_kwargs(config, validation=True)  # GSNN: gsnn_val_samples
        self.warmup_epochs = warmup_epochs(config, model)
        sparse = model.prior.sparse_parameters()
        sparse_ids = {id(p) for p in sparse}
        noise = [p for p in model.likelihood.parameters() if p.requires_grad]
        special = sparse_ids | {id(p) for p in noise}
        dense = [p for p in model.parameters() if p.requires_grad and id(p) not in special]
        groups = [{"params": dense}]
        if noise:
            groups.append({"params": noise, "lr": config.lr_likelihood or LIKELIHOOD_LR_FACTOR * config.lr})
        # foreach: the same element-wise arithmetic as Adam's per-parameter loop (bit-identical
        # steps), in fewer calls: 30-45 % less optimiser time on CPU (benchmarks/profile_fit.py),
        # where torch's default is the loop; on CUDA it is torch's default already
        self.optimizers = [torch.optim.Adam(groups, lr=config.lr, foreach=ADAM_FOREACH)]
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam(sparse, lr=config.lr_random_effects or RANDOM_EFFECTS_LR_FACTOR * config.lr))
        self.schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=config.lr_decay) for o in self.optimizers]
        self.state = TrainState()
        self._last_checkpoint: float | None = None  # time.monotonic() of the last write; None: none yet
        self.n_train = int(data.indices("train").shape[0])
        self.n_val = int(data.indices("validation").shape[0])

    # -- one pass -------------------------------------------------------------------------
    def _pass(self, split: str, train: bool, kwargs: dict | None = None) -> dict[str, float]:
        """One epoch over ``split``; returns the per-row ``−ELBO`` (or GSNN loss) and its parts.

        Every split is scored on the training objective's scale: the local terms are averaged over
        the split's rows and the global term (``KL(q(A) || p(A))``, a term of the training set) is
        divided by the number of *training* rows, so the validation loss of a row equals its
        training loss (SPEC 2.3). The step itself always scales to the training set. Sums stay on
        the device and are read once at the end, so a GPU never waits on the host.
        """
        totals = torch.zeros(4, dtype=torch.float64, device=self.data.device)  # rec, kl_local, kl_global, batches
        n_rows = 0
        self.model.train(train)
        batches = self.data.batches(split, self.config.batch_size, by=self.model.prior.batching,
                                    shuffle=train, generator=self.generator)
        with torch.set_grad_enabled(train):
            for batch in batches:
                terms = self.objective(self.model, batch, self.n_train,
                                       **(self.objective_kwargs if kwargs is None else kwargs))
                if train:
                    for opt in self.optimizers:
                        opt.zero_grad(set_to_none=True)
                    terms.loss.backward()
                    for opt in self.optimizers:
                        opt.step()
                parts = torch.stack([terms.reconstruction, terms.kl_local, terms.kl_global,
                                     torch.ones_like(terms.kl_global)]).detach()
                totals += parts.to(totals.dtype)
                n_rows += batch.size
        rec, kl_local, kl_global, n_batches = totals.tolist()
        per_row = max(n_rows, 1)
        kl_global = kl_global / max(n_batches, 1)  # mean over the pass's steps
        values = {"loss": (kl_local - rec) / per_row + kl_global / max(self.n_train, 1),
                  "reconstruction": rec / per_row, "kl_local": kl_local / per_row, "kl_global": kl_global}
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"non-finite {split} loss; lower lr or check the data for extreme values")
        return values

    def validation_loss(self) -> float:
        """The validation loss with common random numbers (module docstring): the same draws every
        call, more of them under GSNN; the global RNG state is as before the call."""
        devices = list(range(torch.cuda.device_count())) if self.data.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(VALIDATION_SEED)
            return self._pass("validation", train=False, kwargs=self.validation_kwargs)["loss"]

    # -- epochs ---------------------------------------------------------------------------
    def fit(self) -> TrainState:
        """Train until converged or out of budget (module docstring); the kept weights are those of
        the best validation loss after the warm-up (the last epoch if the budget ends inside it)."""
        cfg, state, warmup = self.config, self.state, self.warmup_epochs
        epochs = range(state.epoch, 0 if state.stopped else cfg.epochs)  # a finished run stays finished
        bar = progress(epochs, initial=state.epoch, total=cfg.epochs, unit="epochs",
                       desc=f"{cfg.variant}/{cfg.objective}", enabled=self.progress)
        for epoch in bar:
            start = time.perf_counter()
            self.model.likelihood.start_epoch(epoch, warmup)  # the warm-up's variance ceiling
            self.model.start_epoch(self.data)  # the prior's per-epoch state (GPPVAE's cache)
            train = self._pass("train", train=True)
            val = self.validation_loss() if self.n_val else train["loss"]
            for sched in self.schedulers:
                sched.step()
            state.epoch = epoch + 1
            counted = state.epoch > warmup or state.epoch == cfg.epochs  # after the warm-up (or the last)
            if counted and val < state.best_val:
                state.best_val, state.best_epoch = val, state.epoch
                state.best_state = copy.deepcopy(self.model.state_dict())
            state.history.append(self._history_row(state.epoch, train, val, time.perf_counter() - start))
            bar.set_postfix(loss=f"{train['loss']:.4g}", val=f"{val:.4g}", best=state.best_epoch)
            if counted and cfg.patience and state.epoch - state.best_epoch >= cfg.patience:
                state.stopped = CONVERGED
            elif state.epoch >= cfg.epochs:
                state.stopped = BUDGET
            state.history[-1]["stopped"] = state.stopped
            if state.stopped or self._checkpoint_due():
                self.save_checkpoint()
            if state.stopped:
                break
        if not state.stopped and state.epoch >= cfg.epochs:  # resumed at the budget
            state.stopped = BUDGET
        if state.best_state is not None:
            self.model.load_state_dict(state.best_state)
        return state

    def _history_row(self, epoch: int, train: dict, val: float, seconds: float) -> dict:
        variance = getattr(self.model.likelihood, "variance", None)
        return {"epoch": epoch, "train_loss": train["loss"], "val_loss": val,
                "reconstruction": train["reconstruction"], "kl_local": train["kl_local"],
                "kl_global": train["kl_global"], "lr": self.schedulers[0].get_last_lr()[0], "seconds": seconds,
                "warmup": int(epoch <= self.warmup_epochs),
                "likelihood_variance": float(variance.detach().mean()) if variance is not None else math.nan}

    # -- checkpoints ----------------------------------------------------------------------
    def _checkpoint_due(self) -> bool:
        """Whether this epoch's end writes a checkpoint: the first of this process, or
        ``checkpoint_seconds`` after the last write (module docstring)."""
        last = self._last_checkpoint
        return last is None or time.monotonic() - last >= self.checkpoint_seconds

    def save_checkpoint(self) -> None:
        """``run_dir/checkpoint.pt`` and ``history.csv`` at the end of epoch ``state.epoch``, with the
        random states of that moment (resume replays what follows exactly). Tensors and plain
        containers only, so that resuming loads it with ``torch.load(weights_only=True)`` (a planted
        pickle never runs)."""
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_save({
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "state": {f.name: getattr(self.state, f.name) for f in fields(TrainState)},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }, self.run_dir / CHECKPOINT)
        write_history(self.state.history, self.run_dir / HISTORY)
        self._last_checkpoint = time.monotonic()

    def load_checkpoint(self) -> bool:
        """Resume from ``run_dir/checkpoint.pt`` if there is one; ``True`` if resumed.

        The file is read with ``weights_only=True``. One that cannot be read or does not fit this
        model (truncated, empty, garbage, a pickle with code, another model's) is reported in one
        warning line and deleted, and training starts afresh: a corrupt checkpoint never blocks a
        run (the workflow always passes ``--resume``).
        """
        path = None if self.run_dir is None else self.run_dir / CHECKPOINT
        if path is None or not path.exists():
            return False
        fresh = (copy.deepcopy(self.model.state_dict()), [copy.deepcopy(o.state_dict()) for o in self.optimizers],
                 [copy.deepcopy(s.state_dict()) for s in self.schedulers], self.generator.get_state(),
                 torch.get_rng_state())
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or not CHECKPOINT_KEYS <= set(ckpt):
                raise ValueError(f"not a training checkpoint (keys {sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__})")
            if len(ckpt["optimizers"]) != len(self.optimizers) or len(ckpt["schedulers"]) != len(self.schedulers):
                raise ValueError("written for another model (optimizer count differs)")
            state = TrainState(**ckpt["state"])
            if not (isinstance(state.epoch, int) and 0 <= state.epoch and isinstance(state.history, list)):
                raise ValueError("malformed training state")
            self.model.load_state_dict(ckpt["model"])
            for opt, s in zip(self.optimizers, ckpt["optimizers"]):
                opt.load_state_dict(s)
            for sched, s in zip(self.schedulers, ckpt["schedulers"]):
                sched.load_state_dict(s)
            self.generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            self.state = state
        except Exception as err:  # noqa: BLE001 - any unreadable file: report, discard, start afresh
            model, opts, scheds, generator, rng = fresh
            self.model.load_state_dict(model)
            for opt, s in zip(self.optimizers, opts):
                opt.load_state_dict(s)
            for sched, s in zip(self.schedulers, scheds):
                sched.load_state_dict(s)
            self.generator.set_state(generator)
            torch.set_rng_state(rng)
            self.state = TrainState()
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            warnings.warn(f"{path}: unreadable checkpoint ({type(err).__name__}: {reason}); "
                          "discarded, training starts afresh", LmmvaeWarning, stacklevel=2)
            path.unlink(missing_ok=True)
            return False
        return True


def warmup_epochs(config: ModelConfig, model: LatentVariableModel) -> int:
    """The run's warm-up length: the config's ``warmup_epochs``, or (null) the likelihood's default
    (:attr:`lmmvae.model.likelihoods.Likelihood.default_warmup_epochs`: a tabular Gaussian under the ELBO
    gets ``WARMUP_EPOCHS``; images, Bernoulli and GSNN, whose variance starts at the data's, none)."""
    if config.warmup_epochs is not None:
        return int(config.warmup_epochs)
    return int(model.likelihood.default_warmup_epochs)


def write_history(history: list[dict], path: Path) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, restval="")
        writer.writeheader()
        writer.writerows(history)
