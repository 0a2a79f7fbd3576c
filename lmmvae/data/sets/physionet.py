"""PhysioNet Challenge 2012 (paper 7.3 and appendix G; docs/data_format.md): raw record files -> one HDF5 file.

Raw layout (the challenge's own): ``set-a/<RecordID>.txt`` (and ``set-b``, ``set-c``), each a CSV with
header ``Time,Parameter,Value``, ``Time`` as ``HH:MM`` since ICU admission and the static
descriptors ``RecordID, Age, Gender, Height, ICUType, Weight`` at ``00:00``; outcomes in
``Outcomes-a.txt`` etc. ``-1`` means unknown.

Preprocessing: the 37 time-varying variables are averaged in hourly bins over 48 h (a record at
exactly 48:00 joins the last bin); bins without any observed variable are dropped, then patients
with fewer than ``min_bins`` bins, and patients whose age, gender or ICU type is unknown. Weight is
both a descriptor and a time-varying variable: every known Weight value, the one at 00:00 included,
counts as a measurement. Each variable is standardised on the train split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lmmvae.data.sets._common import (
    check_fraction, check_positive_int, generator_attrs, standardise_on_train, streams,
)
from lmmvae.data.h5 import Covariate, LongitudinalData
from lmmvae.data.sets.generators import Generator, Option, common_options, register_generator
from lmmvae.data.sets.splits import withhold_late_split
from lmmvae.errors import ConfigError, DataFormatError
from lmmvae.progress import Progress

#: the 37 time-varying variables, as named in the raw files (column order of /y)
VARIABLES = (
    "Albumin", "ALP", "ALT", "AST", "Bilirubin", "BUN", "Cholesterol", "Creatinine", "DiasABP",
    "FiO2", "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "Mg", "MAP", "MechVent", "Na",
    "NIDiasABP", "NIMAP", "NISysABP", "PaCO2", "PaO2", "pH", "Platelets", "RespRate", "SaO2",
    "SysABP", "Temp", "TroponinI", "TroponinT", "Urine", "WBC", "Weight",
)
DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType", "Weight")
HEADER = "Time,Parameter,Value"
OUTCOME_COLUMNS = ("RecordID", "SAPS-I", "SOFA", "Length_of_stay", "Survival", "In-hospital_death")
ICU_TYPES = (1, 2, 3, 4)  # coronary care, cardiac surgery recovery, medical, surgical
N_HOURS = 48
_COLUMN = {name: j for j, name in enumerate(VARIABLES)}


def parse_time(text: str) -> int:
    """``HH:MM`` -> minutes since admission (``ValueError`` when malformed)."""
    hours, minutes = text.split(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and int(minutes) < 60):
        raise ValueError(text)
    return int(hours) * 60 + int(minutes)


def read_record(path: Path, n_hours: int = N_HOURS):
    """One patient file -> ``(descriptors, sums [H, 37], counts [H, 37], unknown parameters)``.

    ``descriptors`` holds the 00:00 static values (``-1`` kept as given); the bins hold the sum and
    the number of the known (not ``-1``) values of each variable in each hour.
    """
    sums = np.zeros((n_hours, len(VARIABLES)))  # [H, 37]
    counts = np.zeros((n_hours, len(VARIABLES)), dtype=np.int64)  # [H, 37]
    descriptors: dict[str, float] = {}
    unknown: set[str] = set()
    with open(path, encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    if not lines or lines[0].strip() != HEADER:
        got = lines[0].strip() if lines else "an empty file"
        raise DataFormatError(f"{path}: line 1 must be the header {HEADER!r}, got {got!r}")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != 3:
            raise DataFormatError(f"{path}, line {number}: expected 3 fields 'HH:MM,Parameter,Value', got {line!r}")
        time_text, parameter, value_text = (f.strip() for f in fields)
        try:
            minute = parse_time(time_text)
        except ValueError:
            raise DataFormatError(f"{path}, line {number}: time {time_text!r} is not HH:MM") from None
        try:
            value = float(value_text)
        except ValueError:
            raise DataFormatError(f"{path}, line {number}: value {value_text!r} of {parameter} is not a number") from None
        if minute == 0 and parameter in DESCRIPTORS and parameter not in descriptors:
            descriptors[parameter] = value
        column = _COLUMN.get(parameter)
        if column is None:
            if parameter not in DESCRIPTORS:
                unknown.add(parameter)
            continue
        if value == -1 or not np.isfinite(value) or minute > n_hours * 60:
            continue
        hour = min(minute // 60, n_hours - 1)  # 48:00 joins the last bin
        sums[hour, column] += value
        counts[hour, column] += 1
    return descriptors, sums, counts, unknown


def read_outcomes(path: Path) -> pd.DataFrame:
    """``Outcomes-x.txt`` indexed by RecordID; a DataFormatError names a missing column."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: outcomes file not found (each set-x/ needs its Outcomes-x.txt)")
    table = pd.read_csv(path)
    table.columns = [c.strip() for c in table.columns]
    for column in ("RecordID", "In-hospital_death"):
        if column not in table.columns:
            raise DataFormatError(f"{path}: missing column {column!r} (expected {','.join(OUTCOME_COLUMNS)})")
    return table.set_index(table["RecordID"].astype(np.int64))


def find_sets(raw_dir: Path, sets: list[str] | None) -> list[str]:
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: PhysioNet raw directory not found")
    if sets is None:
        sets = sorted(p.name[len("set-"):] for p in raw_dir.glob("set-*") if p.is_dir())
        if not sets:
            raise FileNotFoundError(f"{raw_dir}: no set-a/, set-b/ or set-c/ directory of record files")
    for name in sets:
        if not (raw_dir / f"set-{name}").is_dir():
            raise FileNotFoundError(f"{raw_dir / f'set-{name}'}: PhysioNet set directory not found")
    return list(sets)


def _read_patients(raw_dir: Path, sets: list[str], min_bins: int, progress: bool):
    """Every kept patient of ``sets``: ``blocks`` (RecordID, observed hours, hourly means [bins, 37],
    observed [bins, 37]), ``statics`` (age, gender, ICU type, mortality) and the drop counts."""
    blocks, statics, unknown, dropped = [], [], set(), {"few bins": 0, "unknown age/gender/ICU type": 0}
    for name in sets:
        outcomes_path = raw_dir / f"Outcomes-{name}.txt"
        outcomes = read_outcomes(outcomes_path)
        files = sorted((raw_dir / f"set-{name}").glob("*.txt"))
        for path in Progress(files, desc=f"physionet set-{name}", unit="patient", enabled=progress, delay=1.0):
            descriptors, sums, counts, unknown_here = read_record(path)
            unknown |= unknown_here
            record_id = int(descriptors.get("RecordID", -1))
            if record_id == -1:
                if not path.stem.isdigit():
                    raise DataFormatError(f"{path}: no RecordID line at 00:00 and the file name is not a RecordID")
                record_id = int(path.stem)
            age, gender, icu = (descriptors.get(k, -1) for k in ("Age", "Gender", "ICUType"))
            if age < 0 or gender not in (0, 1) or icu not in ICU_TYPES:
                dropped["unknown age/gender/ICU type"] += 1
                continue
            hours = np.flatnonzero(counts.sum(axis=1) > 0)  # bins with any observed variable
            if len(hours) < min_bins:
                dropped["few bins"] += 1
                continue
            if record_id not in outcomes.index:
                raise DataFormatError(f"{outcomes_path}: no row for RecordID {record_id} (from {path})")
            mortality = int(outcomes.loc[record_id, "In-hospital_death"])
            means = sums[hours] / np.maximum(counts[hours], 1)  # [bins, 37]
            blocks.append((record_id, hours, means, counts[hours] > 0))
            statics.append((age, int(gender), int(icu), mortality))
    if unknown:
        print(f"physionet: ignored parameters not among the 37 variables: {', '.join(sorted(unknown))}", file=sys.stderr)
    if not blocks:
        raise DataFormatError(f"{raw_dir}: no patient left after filtering ({dropped}); lower --min-bins?")
    return blocks, statics, dropped


def physionet(
    raw_dir: str | Path,
    sets: list[str] | None = None,
    min_bins: int = 10,
    cut_hour: int = 24,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = False,
) -> LongitudinalData:
    """Preprocess the raw challenge files in ``raw_dir`` (docs/data_format.md) into :class:`LongitudinalData`.

    ``sets`` (e.g. ``["a"]``) defaults to every ``set-*`` directory present. Split: ``test_fraction``
    of the patients with bins on both sides of ``cut_hour`` keep their bins before it in train and
    their later bins go to test; all other bins are split train/validation at random.
    """
    raw_dir = Path(raw_dir)
    check_positive_int("--min-bins", min_bins)
    check_fraction("--test-fraction", test_fraction)
    check_fraction("--validation-fraction", validation_fraction)
    if not 1 <= cut_hour < N_HOURS:
        raise ConfigError(f"--cut-hour must be in 1..{N_HOURS - 1}, got {cut_hour}")
    sets = find_sets(raw_dir, sets)

    blocks, statics, dropped = _read_patients(raw_dir, sets, min_bins, progress)

    subject = np.concatenate([np.full(len(b[1]), p) for p, b in enumerate(blocks)])  # [N]
    hour = np.concatenate([b[1] for b in blocks]).astype(np.float64)  # [N]
    y_raw = np.concatenate([b[2] for b in blocks])  # [N, 37]
    mask = np.concatenate([b[3] for b in blocks]).astype(np.uint8)  # [N, 37]
    age, gender, icu, mortality = (np.asarray(col)[subject] for col in zip(*statics))

    (rng_split,) = streams(seed, 1)
    split = withhold_late_split(subject, hour, cut_hour, test_fraction, rng_split, validation_fraction)
    y, mean, std = standardise_on_train(y_raw, mask, split)
    covariates = {
        "time": Covariate(hour, "time"),
        "id": Covariate(subject, "id", levels=[b[0] for b in blocks]),
        "age": Covariate(age, "continuous"),
        "gender": Covariate(gender, "binary"),
        "icu_type": Covariate(icu - 1, "categorical", levels=list(ICU_TYPES)),
        "mortality": Covariate(mortality, "binary"),
    }
    args = dict(
        raw=str(raw_dir), sets=sets, min_bins=min_bins, cut_hour=cut_hour, test_fraction=test_fraction,
        validation_fraction=validation_fraction,
    )
    attrs = generator_attrs("physionet", __name__, seed, args)
    attrs.update(
        feature_names=list(VARIABLES), feature_mean=mean.tolist(), feature_std=std.tolist(),
        dropped_patients=json.dumps(dropped),
    )
    return LongitudinalData(y=y, mask=mask, split=split, covariates=covariates, attrs=attrs)


def _run(args) -> LongitudinalData:
    sets = [s.strip() for s in args.sets.split(",") if s.strip()] if args.sets else None
    return physionet(
        args.raw, sets=sets, min_bins=args.min_bins, cut_hour=args.cut_hour, test_fraction=args.test_fraction,
        validation_fraction=args.validation_fraction, seed=args.seed, progress=not args.quiet,
    )


register_generator(Generator("physionet", "PhysioNet 2012 (paper 7.3) from the raw challenge files", (
    Option(("--raw",), None, None, "directory with set-a/ (set-b/, set-c/) and Outcomes-*.txt", required=True, metavar="DIR"),
    Option(("--sets",), None, None, "comma-separated sets to read, e.g. a,b (default: every set-* found)"),
    Option(("--min-bins",), "WHOLE", 10, "minimum observed hourly bins per patient (default 10)"),
    Option(("--cut-hour",), "WHOLE", 24, "test patients' bins before this hour stay in train, later ones are test (default 24)"),
    *common_options(),
), _run, raw=True))
