"""One level matcher: a subject id written ``12`` in training and ``12.0`` at test time is
one subject for every path that matches levels — the loader's ``recode`` (``batch.subject``, read by
sLMM-VAE, and ``batch.covariates``, read by the GP priors), the design's random-effect codes (read
by oLMM-VAE and MixedLM) — so the models predict exactly as if the id had been written the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmvae
from lmmvae.data.h5 import Covariate, LongitudinalData, match_levels
from simulate import simulate_lmm

#: one variant per level-matching path: design codes (olmm), batch.subject (slmm), batch.covariates (lvae)
DESIGNS = {"olmm": "~ time + sex + (1 | id)", "slmm": "~ time + sex", "lvae": "~ time + (1 | id)"}
FIRST_ID = 10  # integer ids 10, 11, 12, ...


def _int_ids(data: LongitudinalData) -> LongitudinalData:
    n = len(data.covariates["id"].levels)
    ids = Covariate(data.covariates["id"].values, "id", levels=list(range(FIRST_ID, FIRST_ID + n)))
    return LongitudinalData(data.y, data.mask, data.split, {**data.covariates, "id": ids})


def _float_ids(data: LongitudinalData) -> LongitudinalData:
    """The same rows with every id written as a float, in reversed level order (so codes differ)."""
    cov = data.covariates["id"]
    n = len(cov.levels)
    ids = Covariate(n - 1 - cov.values, "id", levels=[float(v) for v in reversed(cov.levels)])
    return LongitudinalData(data.y, data.mask, data.split, {**data.covariates, "id": ids})


@pytest.fixture(scope="module")
def data():
    return _int_ids(simulate_lmm(n_subjects=6, n_times=5, data_dim=4, n_future=1, seed=5))


def test_the_matcher_maps_12_point_0_onto_12():
    assert match_levels([12.0, 10.0, 99.0], [10, 11, 12]).tolist() == [2, 0, -1]


@pytest.mark.parametrize("variant", sorted(DESIGNS))
def test_every_path_sees_12_point_0_as_subject_12(variant, data, tmp_path):
    fitted = lmmvae.fit(data, out=tmp_path / variant, variant=variant, design=DESIGNS[variant], latent_dim=2,
                        network="mlp", network_options={"hidden": [8]}, epochs=1, batch_size=16, lr=1e-2,
                        progress=False)
    same, floats = fitted.tensors(data), fitted.tensors(_float_ids(data))
    codes = same.covariates["id"].numpy()
    assert (codes >= 0).all()  # every subject known: the training ids themselves
    # loader (batch.subject, batch.covariates) and design (random-effect codes) agree on who is who
    assert floats.covariates["id"].numpy().tolist() == codes.tolist()
    if fitted.config.subject is not None:
        assert floats.subject.numpy().tolist() == same.subject.numpy().tolist() == codes.tolist()
    for x in (same.x, floats.x):
        for levels in x.levels:
            assert levels.numpy().tolist() == codes.tolist()
    # so predictions at the same covariates are identical, whether the ids come as 12 or 12.0 ...
    frame = pd.DataFrame({"time": data.covariates["time"].values, "sex": data.covariates["sex"].values,
                          "id": np.asarray(data.covariates["id"].levels)[codes]})
    as_int = fitted.predict_arrays(frame)["y_pred"]
    as_float = fitted.predict_arrays(frame.assign(id=frame["id"].astype(float)))["y_pred"]
    np.testing.assert_array_equal(as_float, as_int)
    # ... and differ from those for subjects training never saw (the test can fail)
    unseen = fitted.predict_arrays(frame.assign(id=frame["id"] + 1000))["y_pred"]
    assert not np.allclose(unseen, as_int)
