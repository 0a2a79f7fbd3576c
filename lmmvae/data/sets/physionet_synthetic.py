"""A synthetic PhysioNet 2012 cohort written in the challenge's raw format (docs/data_format.md).

So that the default pipeline runs the real preprocessing (:mod:`lmmvae.data.sets.physionet`) without
the real files. Each patient has a severity ``s`` and a trend ``r`` (recovering or worsening over the
48 h) that move every variable along its own loading, a patient-level offset per variable, and
measurement noise; variables are sampled at their own rhythm (heart rate about hourly, labs every
12-24 h, liver panel and troponins for some patients only), invasive blood pressure, FiO2 and blood
gases mostly for ventilated patients. Mortality follows severity and trend, so the static
covariates relate to the trajectories. The numbers are plausible, not fitted to the real cohort.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmmvae.atomic import atomic_output
from lmmvae.data.sets._common import check_positive_int, streams
from lmmvae.data.sets.generators import Generator, Option, register_generator
from lmmvae.data.sets.physionet import HEADER, N_HOURS, OUTCOME_COLUMNS
from lmmvae.progress import Progress

# name: (centre, scale, low, high, decimals, log scale, severity loading)
# on log scale the value is exp(log(centre) + scale * z); otherwise centre + scale * z
_VARIABLES = {
    "Albumin": (2.9, 0.6, 1.0, 5.3, 1, False, -0.5),
    "ALP": (90, 0.6, 12, 2000, 0, True, 0.2),
    "ALT": (45, 1.1, 2, 10000, 0, True, 0.4),
    "AST": (60, 1.1, 4, 15000, 0, True, 0.4),
    "Bilirubin": (1.0, 0.9, 0.1, 45, 1, True, 0.4),
    "BUN": (22, 0.6, 1, 200, 0, True, 0.6),
    "Cholesterol": (155, 45, 30, 350, 0, False, -0.1),
    "Creatinine": (1.1, 0.6, 0.1, 20, 1, True, 0.6),
    "DiasABP": (59, 12, 10, 150, 0, False, -0.4),
    "FiO2": (0.5, 0.17, 0.21, 1.0, 2, False, 0.5),
    "GCS": (11, 3.5, 3, 15, 0, False, -0.7),
    "Glucose": (135, 0.35, 20, 800, 0, True, 0.3),
    "HCO3": (23.5, 4.2, 5, 50, 0, False, -0.5),
    "HCT": (30.5, 4.8, 10, 60, 1, False, -0.3),
    "HR": (87, 16, 30, 220, 0, False, 0.5),
    "K": (4.1, 0.55, 1.8, 8.5, 1, False, 0.2),
    "Lactate": (2.0, 0.6, 0.3, 25, 1, True, 0.7),
    "Mg": (2.0, 0.35, 0.6, 5.0, 1, False, 0.1),
    "MAP": (80, 14, 20, 200, 0, False, -0.6),
    "MechVent": (1, 0, 1, 1, 0, False, 0.0),
    "Na": (139, 4.8, 110, 170, 0, False, 0.1),
    "NIDiasABP": (58, 13, 10, 150, 0, False, -0.4),
    "NIMAP": (77, 14, 20, 200, 0, False, -0.6),
    "NISysABP": (119, 22, 40, 250, 0, False, -0.5),
    "PaCO2": (40, 8, 15, 100, 0, False, 0.2),
    "PaO2": (130, 0.45, 30, 500, 0, True, -0.4),
    "pH": (7.39, 0.065, 6.9, 7.7, 2, False, -0.5),
    "Platelets": (190, 0.45, 10, 900, 0, True, -0.5),
    "RespRate": (19, 5, 4, 60, 0, False, 0.5),
    "SaO2": (97, 2.2, 70, 100, 0, False, -0.4),
    "SysABP": (119, 21, 40, 250, 0, False, -0.5),
    "Temp": (37.1, 0.7, 33.5, 41.0, 1, False, 0.3),
    "TroponinI": (3.0, 1.2, 0.1, 50, 1, True, 0.3),
    "TroponinT": (0.3, 1.3, 0.01, 25, 2, True, 0.3),
    "Urine": (90, 0.8, 0, 1500, 0, True, -0.5),
    "WBC": (11.5, 0.45, 0.3, 80, 1, True, 0.5),
    "Weight": (82, 20, 35, 250, 1, False, 0.0),
}
# groups measured together: (variables, mean hours between measurements, who has them)
_GROUPS = (
    (("HR",), 1.0, "all"),
    (("SysABP", "DiasABP", "MAP"), 1.0, "arterial"),
    (("NISysABP", "NIDiasABP", "NIMAP"), 1.2, "no_arterial"),
    (("NISysABP", "NIDiasABP", "NIMAP"), 8.0, "arterial"),
    (("Temp",), 3.0, "all"),
    (("RespRate",), 1.0, "not_ventilated"),
    (("GCS",), 4.0, "all"),
    (("Urine",), 1.3, "urine"),
    (("MechVent",), 4.0, "ventilated"),
    (("FiO2",), 4.0, "ventilated"),
    (("pH", "PaCO2", "PaO2"), 5.0, "ventilated"),
    (("pH", "PaCO2", "PaO2"), 14.0, "not_ventilated_gases"),
    (("SaO2",), 10.0, "sao2"),
    (("BUN", "Creatinine", "HCO3", "K", "Mg", "Na", "Glucose", "HCT", "Platelets", "WBC"), 14.0, "all"),
    (("ALP", "ALT", "AST", "Bilirubin", "Albumin"), 24.0, "liver"),
    (("Lactate",), 10.0, "lactate"),
    (("TroponinI",), 20.0, "troponin_i"),
    (("TroponinT",), 20.0, "troponin_t"),
    (("Cholesterol",), 40.0, "cholesterol"),
    (("Weight",), 24.0, "weight"),
)
_ICU_PROBS = (0.15, 0.2, 0.36, 0.29)  # ICUType 1..4


def _format(value: float, decimals: int) -> str:
    return np.format_float_positional(round(float(value), decimals), trim="-")


def _times(rng: np.random.Generator, interval: float) -> np.ndarray:
    """Minutes of a roughly regular series over 48 h: first reading early, gamma gaps."""
    times, t = [], rng.uniform(0.0, min(interval, 2.0)) * 60
    while t <= N_HOURS * 60:
        times.append(int(t))
        t += interval * 60 * rng.gamma(4.0, 0.25)
    return np.asarray(times, dtype=np.int64)


#: organ systems whose patient-level factor moves their variables together
_SYSTEMS = {
    "cardiovascular": ("DiasABP", "MAP", "SysABP", "NIDiasABP", "NIMAP", "NISysABP", "HR", "TroponinI", "TroponinT"),
    "renal": ("BUN", "Creatinine", "K", "Mg", "Urine"),
    "hepatic": ("ALP", "ALT", "AST", "Bilirubin", "Albumin", "Cholesterol"),
    "respiratory": ("FiO2", "PaCO2", "PaO2", "pH", "SaO2", "RespRate", "HCO3", "Lactate", "MechVent"),
    "general": ("Glucose", "Na", "Temp", "HCT", "Platelets", "WBC", "GCS", "Weight"),
}
_SYSTEM_NAMES = tuple(_SYSTEMS)
_SYSTEM_OF = {name: system for system, names in _SYSTEMS.items() for name in names}
SYSTEM_SD = 0.45  # std of a system factor's contribution to each of its variables
OWN_SD = 0.15  # std of the per-variable part of a patient's offset


def _patient(rng: np.random.Generator, record_id: int):
    """One patient's lines (after the header) and outcome row."""
    icu = int(rng.choice(4, p=_ICU_PROBS)) + 1
    age = int(np.clip(rng.normal(65, 17), 15, 90))
    gender = int(rng.random() < 0.56) if rng.random() > 0.002 else -1
    height = round(float(np.clip(rng.normal(170, 10), 130, 210)), 1) if rng.random() < 0.5 else -1
    weight = round(float(np.clip(rng.normal(82, 20), 35, 250)), 1) if rng.random() < 0.9 else -1
    severity = rng.normal() + 0.3 * (icu == 3) - 0.4 * (icu == 2) + 0.01 * (age - 65)
    trend = rng.normal()  # > 0 recovering over the 48 h
    ventilated = rng.random() < (0.85 if icu == 2 else 0.45)
    has = {
        "all": True, "arterial": ventilated or rng.random() < 0.3, "ventilated": ventilated,
        "not_ventilated": not ventilated, "not_ventilated_gases": not ventilated and rng.random() < 0.4,
        "urine": rng.random() < 0.85, "sao2": rng.random() < 0.45, "liver": rng.random() < 0.4,
        "lactate": rng.random() < 0.5, "troponin_i": rng.random() < (0.2 if icu == 1 else 0.04),
        "troponin_t": rng.random() < (0.45 if icu == 1 else 0.15), "cholesterol": rng.random() < 0.08,
        "weight": weight != -1 and rng.random() < 0.6,
    }
    has["no_arterial"] = not has["arterial"]
    # patient-level offsets: an organ-system factor shared by the variables of the system, plus a
    # small per-variable part (the variables of one system move together, as real labs do)
    systems = {system: rng.normal() for system in _SYSTEM_NAMES}
    offsets = {name: SYSTEM_SD * np.sign(_VARIABLES[name][6] or 1.0) * systems[_SYSTEM_OF[name]]
               + rng.normal(0, OWN_SD) for name in _VARIABLES}

    lines = [("00:00", "RecordID", str(record_id)), ("00:00", "Age", str(age)),
             ("00:00", "Gender", str(gender)), ("00:00", "Height", _format(height, 1)),
             ("00:00", "ICUType", str(icu)), ("00:00", "Weight", _format(weight, 1))]
    measurements = []
    for names, interval, who in _GROUPS:
        if not has[who]:
            continue
        for minute in _times(rng, interval):
            progress = minute / (N_HOURS * 60) - 0.5  # -0.5 .. 0.5 over the stay
            for name in names:
                if len(names) > 1 and rng.random() < 0.08:  # a test of the panel not done
                    continue
                centre, scale, low, high, decimals, log, loading = _VARIABLES[name]
                latent = severity - 1.5 * trend * progress  # the patient's state at this time
                z = 0.6 * loading * latent + offsets[name] + rng.normal(0, 0.4)
                if name == "Weight":
                    value = weight + rng.normal(0, 1.0)
                elif log:
                    value = np.exp(np.log(centre) + scale * z)
                else:
                    value = centre + scale * z
                measurements.append((minute, name, _format(np.clip(value, low, high), decimals)))
    measurements.sort(key=lambda m: m[0])  # stable: panels stay together
    lines += [(f"{m // 60:02d}:{m % 60:02d}", name, value) for m, name, value in measurements]

    death = int(rng.random() < 1 / (1 + np.exp(-(-2.0 + 0.9 * severity - 0.5 * trend))))
    stay = int(np.clip(round(2 + rng.lognormal(1.5, 0.7)), 2, 90))
    saps = int(np.clip(round(14 + 4 * severity + rng.normal(0, 2)), 0, 34))
    sofa = int(np.clip(round(6 + 3 * severity + rng.normal(0, 1.5)), 0, 24))
    outcome = (record_id, saps, sofa, stay, stay if death else -1, death)
    return lines, outcome


def physionet_synthetic(out_dir: str | Path, n_patients: int = 400, seed: int = 0, progress: bool = False) -> Path:
    """Write ``set-a/<RecordID>.txt`` and ``Outcomes-a.txt`` for ``n_patients`` synthetic patients.

    Deterministic for ``seed``. Each file is written under a temporary name and renamed.
    """
    check_positive_int("--instances", n_patients)
    out_dir = Path(out_dir)
    set_dir = out_dir / "set-a"
    set_dir.mkdir(parents=True, exist_ok=True)
    rngs = streams(seed, n_patients)  # one stream per patient: a patient does not depend on n_patients
    outcomes = []
    for p in Progress(range(n_patients), desc="physionet-synthetic", unit="patient", enabled=progress, delay=1.0):
        record_id = 132539 + p
        lines, outcome = _patient(rngs[p], record_id)
        _write_text(set_dir / f"{record_id}.txt", [HEADER] + [",".join(line) for line in lines])
        outcomes.append(",".join(str(v) for v in outcome))
    _write_text(out_dir / "Outcomes-a.txt", [",".join(OUTCOME_COLUMNS)] + outcomes)
    return out_dir


def _write_text(path: Path, lines: list[str]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _run(args) -> str:
    out = physionet_synthetic(args.out_dir, n_patients=args.instances, seed=args.seed, progress=not args.quiet)
    return f"wrote {args.instances} synthetic patients to {out}"


register_generator(Generator("physionet-synthetic", "write a synthetic cohort in the raw PhysioNet format", (
    Option(("--instances", "--patients"), "SIZE", 400, "patients (default 400)", dest="instances"),
    Option(("--seed",), "SEED", 0, "random seed (default 0)"),
    Option(("--out-dir",), None, None, "writes DIR/set-a/*.txt and DIR/Outcomes-a.txt", required=True, metavar="DIR"),
    Option(("--quiet",), "flag", False, "no progress bar"),
), _run, workflow=False))
