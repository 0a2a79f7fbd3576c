"""Many subjects: oLMM-VAE's epoch time and peak memory on simulated data with a fixed number of
observations and 10², 10³, 10⁴ and 10⁵ subjects, each with a random intercept and slope.

    .venv/bin/python -m benchmarks.many_subjects [--device cuda] [--repeats 3] [--quick]

Design ``~ time + x0 + x1 + (1 + time | id)``; N = 200,000 rows (two per subject at 10⁵).
Random-effect rows of ``A`` are gathered per batch and updated by SparseAdam (SPEC 1), so a step
should cost the same whatever the number of subjects; the model's state (the ``P × 2 × L``
coefficients of ``q(A)`` and their optimiser moments) necessarily grows with ``P``.
"""

from __future__ import annotations

from benchmarks import harness, scaling
from lmmvae.training.runtime import choose_device

NAME = "many_subjects"
N_OBS = 200_000
SUBJECTS = (100, 1_000, 10_000, 100_000)
N_COVARIATES = 2


def run(device: str = "cpu", n_obs: int = N_OBS, subjects=SUBJECTS, repeats: int = 3, steps: int | None = None,
        command: str = "") -> harness.Result:
    rows = scaling.sweep("n_subjects", list(subjects), lambda p: scaling.simulated(n_obs, p, N_COVARIATES),
                         lambda p: scaling.design_formula(N_COVARIATES), device, repeats, steps)
    notes = scaling.verdict(rows, "n_subjects") + [
        f"N = {n_obs:,} observations, all in the train split; "
        f"{'whole epochs' if steps is None else f'the first {steps} steps scaled to an epoch'}, "
        f"median of {repeats} interleaved repeats. model MB = parameters, buffers and optimiser state; "
        "step MB = what a training step allocates on top of data and model (activations, temporaries, gradients)."]
    return harness.Result(NAME, rows, harness.markdown_table(rows, scaling.columns("n_subjects", "subjects")),
                          command, harness.describe_machine(choose_device(device)), notes)


def main(argv=None) -> harness.Result:
    return scaling.main(NAME, __doc__, run, {"n_obs": 400, "subjects": (10, 200)}, argv)

if __name__ == "__main__":
    main()
