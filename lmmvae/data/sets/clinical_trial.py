"""A clinical trial in CDISC SDTM (paper appendix H; docs/data_format.md): domains ``lb vs dm ae cm`` -> one HDF5 file.

Each domain is read from ``<dir>/<domain>.csv``, ``.xpt`` (SAS transport) or ``.sas7bdat`` (names
case-insensitive). Preprocessing (appendix H.1):

- ``y``: numeric lab (``LBSTRESN``) and vital-sign (``VSSTRESN``) results, averaged per subject, visit
  day (``--DY``, else ``VISITDY``) and test code; tests seen in fewer than ``min_feature_fraction`` of
  visits are dropped (our addition: a test done once in the trial cannot be learnt);
- visits with fewer than ``min_observed`` (a fraction of the features) observed results are dropped,
  then subjects with fewer than ``min_visits`` visits or no known age and sex in ``dm``;
- covariates: ``day`` (time), ``id`` (USUBJID), ``age``, ``sex`` (1 = F), ``race`` and ``arm`` when ``dm``
  has them, and one binary covariate per AE term and per CM term among the 10 most frequent (by
  number of records, ties alphabetical, counting only records with a known start and end day),
  1 when the visit day lies within the record's start..end days;
- split as Health MNIST: test subjects keep their first ``train_visits`` visits in train;
- each feature standardised on the train split.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.data.sets._common import check_fraction, check_positive_int, generator_attrs, standardise_on_train, streams
from lmmvae.data.sets.generators import Generator, Option, common_options, register_generator
from lmmvae.data.sets.splits import withhold_late_split
from lmmvae.errors import DataFormatError

DOMAINS = ("lb", "vs", "dm", "ae", "cm")
_READERS = {
    ".csv": lambda p: pd.read_csv(p, low_memory=False),
    ".xpt": lambda p: pd.read_sas(p, format="xport", encoding="latin-1"),
    ".sas7bdat": lambda p: pd.read_sas(p, format="sas7bdat", encoding="infer"),  # the file records it
}


def read_domain(raw_dir: Path, domain: str) -> tuple[pd.DataFrame, Path]:
    """The table of one SDTM domain with upper-case column names, and the file it came from."""
    files = sorted(
        (p for p in raw_dir.iterdir() if p.stem.lower() == domain and p.suffix.lower() in _READERS),
        key=lambda p: list(_READERS).index(p.suffix.lower()),
    )
    if not files:
        raise FileNotFoundError(f"{raw_dir / domain}.csv|.xpt|.sas7bdat: SDTM domain {domain!r} not found")
    path = files[0]
    try:
        table = _READERS[path.suffix.lower()](path)
    except Exception as err:  # pandas raises many types for a corrupt file
        raise DataFormatError(f"{path}: cannot read SDTM {domain} ({type(err).__name__}: {err})") from None
    table.columns = [str(c).strip().upper() for c in table.columns]
    return table, path


def _require(table: pd.DataFrame, path: Path, *columns: str) -> None:
    for column in columns:
        if column not in table.columns:
            raise DataFormatError(f"{path}: missing column {column} (needs {', '.join(columns)})")


def _text(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip().str.upper()


def _findings(table: pd.DataFrame, path: Path, prefix: str) -> pd.DataFrame:
    """``lb``/``vs`` -> long table ``USUBJID, day, test, value`` of numeric results."""
    _require(table, path, "USUBJID", f"{prefix}TESTCD")
    if f"{prefix}STRESN" in table.columns:
        value = pd.to_numeric(table[f"{prefix}STRESN"], errors="coerce")
    elif f"{prefix}STRESC" in table.columns:
        value = pd.to_numeric(table[f"{prefix}STRESC"], errors="coerce")
    else:
        raise DataFormatError(f"{path}: missing column {prefix}STRESN (numeric standard result)")
    day = pd.Series(np.nan, index=table.index)
    if f"{prefix}DY" in table.columns:
        day = pd.to_numeric(table[f"{prefix}DY"], errors="coerce")
    if "VISITDY" in table.columns:
        day = day.fillna(pd.to_numeric(table["VISITDY"], errors="coerce"))
    elif f"{prefix}DY" not in table.columns:
        raise DataFormatError(f"{path}: missing column {prefix}DY or VISITDY (the visit day)")
    long = pd.DataFrame({
        "USUBJID": _text(table["USUBJID"]), "day": day, "test": _text(table[f"{prefix}TESTCD"]), "value": value,
    })
    return long.dropna()


def _events(table: pd.DataFrame, path: Path, prefix: str) -> pd.DataFrame:
    """``ae``/``cm`` -> ``USUBJID, term, start, end`` for records with a known start and end day."""
    term_column = f"{prefix}DECOD" if f"{prefix}DECOD" in table.columns else {"AE": "AETERM", "CM": "CMTRT"}[prefix]
    _require(table, path, "USUBJID", term_column, f"{prefix}STDY", f"{prefix}ENDY")
    events = pd.DataFrame({
        "USUBJID": _text(table["USUBJID"]), "term": _text(table[term_column]),
        "start": pd.to_numeric(table[f"{prefix}STDY"], errors="coerce"),
        "end": pd.to_numeric(table[f"{prefix}ENDY"], errors="coerce"),
    })
    return events.dropna()


def _slug(term: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", term.lower()).strip("_") or "term"


def _event_covariates(events: pd.DataFrame, prefix: str, subject_ids: np.ndarray, day: np.ndarray, n_terms: int):
    """Binary covariates ``<prefix>_<term>`` [N] for the ``n_terms`` most frequent terms."""
    counts = events["term"].value_counts()
    top = sorted(counts.index, key=lambda t: (-counts[t], t))[:n_terms]
    covariates, names = {}, []
    rows = pd.DataFrame({"USUBJID": subject_ids, "day": day, "row": np.arange(len(day))})
    for term in top:
        name = f"{prefix}_{_slug(term)}"
        while name in covariates:
            name += "_"
        hits = rows.merge(events[events["term"] == term], on="USUBJID")
        active_rows = hits.loc[(hits["start"] <= hits["day"]) & (hits["day"] <= hits["end"]), "row"]
        active = np.zeros(len(day), dtype=np.int64)
        active[active_rows.to_numpy()] = 1
        covariates[name] = Covariate(active, "binary")
        names.append(term)
    return covariates, names


def _wide_findings(tables: dict, min_feature_fraction: float, min_observed: float, raw_dir: Path) -> pd.DataFrame:
    """Labs and vital signs as one table, a row per (USUBJID, day), a column per test seen often enough,
    visits with too few tests dropped (a name in both domains gets an LB_/VS_ prefix)."""
    lb, vs = _findings(*tables["lb"], "LB"), _findings(*tables["vs"], "VS")
    clash = set(lb["test"]) & set(vs["test"])
    lb.loc[lb["test"].isin(clash), "test"] = "LB_" + lb["test"]
    vs.loc[vs["test"].isin(clash), "test"] = "VS_" + vs["test"]
    long = pd.concat([lb, vs], ignore_index=True)
    wide = long.pivot_table(index=["USUBJID", "day"], columns="test", values="value", aggfunc="mean")
    wide = wide.loc[:, wide.notna().mean(axis=0) >= min_feature_fraction]
    if wide.shape[1] == 0:
        raise DataFormatError(f"{raw_dir}: no lab or vital-sign test is observed in {min_feature_fraction:.0%} of visits")
    wide = wide[sorted(wide.columns)]
    wide = wide[wide.notna().mean(axis=1) >= min_observed]
    return wide


def _keep_subjects(wide: pd.DataFrame, dm_table, min_visits: int, raw_dir: Path):
    """The visits of subjects in dm with a known age and sex and enough visits, sorted: ``wide``, the
    demographics indexed by USUBJID and the drop counts."""
    dm, dm_path = dm_table
    _require(dm, dm_path, "USUBJID", "AGE", "SEX")
    dm = dm.assign(USUBJID=_text(dm["USUBJID"]), SEX=_text(dm["SEX"]), AGE=pd.to_numeric(dm["AGE"], errors="coerce"))
    dm = dm[dm["AGE"].notna() & dm["SEX"].isin(["F", "M"])].drop_duplicates("USUBJID").set_index("USUBJID")
    with_results = set(wide.index.get_level_values("USUBJID"))
    wide = wide[wide.index.get_level_values("USUBJID").isin(dm.index)]
    n_visits = wide.groupby(level="USUBJID").size()
    wide = wide[wide.index.get_level_values("USUBJID").isin(n_visits.index[n_visits >= min_visits])]
    dropped = {"not in dm or unknown age/sex": len(with_results - set(dm.index)),
               "few visits": int((n_visits < min_visits).sum())}
    if len(wide) == 0:
        raise DataFormatError(f"{raw_dir}: no subject left after filtering; lower --min-visits or --min-observed")
    wide = wide.sort_index()
    return wide, dm, dropped


def _covariates(dm: pd.DataFrame, tables: dict, subject_ids, subject, day, levels, n_terms: int):
    """Day, id, age, sex, race and arm when given, and the adverse-event / medication indicators of
    the ``n_terms`` most frequent terms: ``covariates, terms`` (the terms kept per domain)."""
    demo = dm.loc[subject_ids]
    covariates = {
        "day": Covariate(day, "time"),
        "id": Covariate(subject, "id", levels=levels),
        "age": Covariate(demo["AGE"].to_numpy(dtype=np.float64), "continuous"),
        "sex": Covariate((demo["SEX"] == "F").to_numpy(), "binary"),
    }
    for column in ("RACE", "ARM"):
        if column in dm.columns:
            values = _text(demo[column]).fillna("UNKNOWN").to_numpy(dtype=str)  # [N]
            covariates[column.lower()] = Covariate(values, "categorical")  # levels: the sorted names
    terms = {}
    for domain, prefix in (("ae", "AE"), ("cm", "CM")):
        events = _events(*tables[domain], prefix)
        events = events[events["USUBJID"].isin(levels)]
        found, terms[domain] = _event_covariates(events, domain, subject_ids, day, n_terms)
        covariates.update(found)
    return covariates, terms


def clinical_trial(
    raw_dir: str | Path,
    min_observed: float = 0.2,
    min_visits: int = 3,
    min_feature_fraction: float = 0.1,
    train_visits: int = 3,
    n_terms: int = 10,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> LongitudinalData:
    """Preprocess one trial's SDTM domains in ``raw_dir`` into :class:`LongitudinalData` (module doc)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: SDTM directory not found")
    check_fraction("--min-observed", min_observed, high_open=False)
    check_fraction("--min-feature-fraction", min_feature_fraction)
    check_positive_int("--min-visits", min_visits)
    check_positive_int("--train-visits", train_visits)
    check_positive_int("--terms", n_terms, minimum=0)
    check_fraction("--test-fraction", test_fraction)
    check_fraction("--validation-fraction", validation_fraction)
    tables = {d: read_domain(raw_dir, d) for d in DOMAINS}

    wide = _wide_findings(tables, min_feature_fraction, min_observed, raw_dir)  # [visits, tests]

    wide, dm, dropped = _keep_subjects(wide, tables["dm"], min_visits, raw_dir)

    subject_ids = wide.index.get_level_values("USUBJID").to_numpy(dtype=object)  # [N]
    day = wide.index.get_level_values("day").to_numpy(dtype=np.float64)  # [N]
    levels = sorted(set(subject_ids))
    subject = np.searchsorted(np.asarray(levels, dtype=object), subject_ids)  # [N]
    visit = pd.Series(day).groupby(subject).cumcount().to_numpy()  # [N] 0-based visit number
    y_raw = wide.to_numpy(dtype=np.float64)  # [N, D]
    mask = np.isfinite(y_raw).astype(np.uint8)
    (rng_split,) = streams(seed, 1)
    split = withhold_late_split(subject, visit, train_visits, test_fraction, rng_split, validation_fraction)
    y, mean, std = standardise_on_train(np.nan_to_num(y_raw), mask, split)

    covariates, terms = _covariates(dm, tables, subject_ids, subject, day, levels, n_terms)

    args = dict(
        raw=str(raw_dir), min_observed=min_observed, min_visits=min_visits,
        min_feature_fraction=min_feature_fraction, train_visits=train_visits, terms=n_terms,
        test_fraction=test_fraction, validation_fraction=validation_fraction,
    )
    attrs = generator_attrs("clinical_trial", __name__, seed, args)
    attrs.update(
        feature_names=[str(c) for c in wide.columns], feature_mean=mean.tolist(), feature_std=std.tolist(),
        ae_terms=json.dumps(terms["ae"]), cm_terms=json.dumps(terms["cm"]), dropped_subjects=json.dumps(dropped),
    )
    return LongitudinalData(y=y, mask=mask, split=split, covariates=covariates, attrs=attrs)


def _run(args) -> LongitudinalData:
    return clinical_trial(
        args.raw, min_observed=args.min_observed, min_visits=args.min_visits,
        min_feature_fraction=args.min_feature_fraction, train_visits=args.train_visits, n_terms=args.terms,
        test_fraction=args.test_fraction, validation_fraction=args.validation_fraction, seed=args.seed,
    )


register_generator(Generator("clinical-trial", "a clinical trial (paper appendix H) from SDTM lb vs dm ae cm", (
    Option(("--raw",), None, None, "directory with lb, vs, dm, ae, cm (.csv, .xpt or .sas7bdat)", required=True, metavar="DIR"),
    Option(("--min-observed",), "float", 0.2, "drop visits with fewer than this fraction of features observed (default 0.2)"),
    Option(("--min-visits",), "WHOLE", 3, "drop subjects with fewer visits (default 3)"),
    Option(("--min-feature-fraction",), "float", 0.1, "drop tests observed in fewer than this fraction of visits (default 0.1)"),
    Option(("--train-visits",), "WHOLE", 3, "visits of each test subject kept in train (default 3)"),
    Option(("--terms",), "WHOLE", 10, "most frequent AE and CM terms kept as covariates (default 10)"),
    *common_options(),
), _run, raw=True))
