"""Many covariates: oLMM-VAE's epoch time and peak memory on simulated data with 10, 100 and 1,000
shared covariates, a fixed number of observations and subjects (random intercepts and slopes).

    .venv/bin/python -m benchmarks.many_covariates [--device cuda] [--repeats 3] [--quick]

Design ``~ time + x0 + … + x{Q−1} + (1 + time | id)``; N = 50,000 rows of 1,000 subjects. The
shared columns enter through one ``[B, Q] × [Q, L]`` product per step, so the step's cost grows
with ``Q`` only through that product and the ``Q × L`` block of ``q(A)``.
"""

from __future__ import annotations

from benchmarks import harness, scaling
from lmmvae.training.runtime import choose_device

NAME = "many_covariates"
N_OBS = 50_000
N_SUBJECTS = 1_000
COVARIATES = (10, 100, 1_000)


def run(device: str = "cpu", n_obs: int = N_OBS, n_subjects: int = N_SUBJECTS, covariates=COVARIATES,
        repeats: int = 3, steps: int | None = None, command: str = "") -> harness.Result:
    rows = scaling.sweep("n_covariates", list(covariates), lambda q: scaling.simulated(n_obs, n_subjects, q),
                         scaling.design_formula, device, repeats, steps)
    notes = scaling.verdict(rows, "n_covariates", target=False) + [
        f"N = {n_obs:,} observations of {n_subjects:,} subjects, all in the train split; "
        f"{'whole epochs' if steps is None else f'the first {steps} steps scaled to an epoch'}, "
        f"median of {repeats} interleaved repeats. data MB includes the dense `N × Q` shared design."]
    return harness.Result(NAME, rows, harness.markdown_table(rows, scaling.columns("n_covariates", "covariates")),
                          command, harness.describe_machine(choose_device(device)), notes)


def main(argv=None) -> harness.Result:
    return scaling.main(NAME, __doc__, run, {"n_obs": 400, "n_subjects": 20, "covariates": (2, 20)}, argv)

if __name__ == "__main__":
    main()
