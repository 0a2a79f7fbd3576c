"""A synthetic clinical trial in the SDTM layout that :mod:`lmmvae.data.sets.clinical_trial` reads.

Three arms (placebo and two doses) followed over a visit schedule with dropout. Each subject has a
random intercept and slope per test; the drug raises liver enzymes and lowers neutrophils and blood
pressure in proportion to dose and time; age and sex shift some tests. Adverse events arise from
background rates (higher on drug) and from the labs (neutropenia when neutrophils are low, ALT
increased when ALT is high, anaemia when haemoglobin is low); concomitant medications treat some of
them or are chronic. Some records lack an end day (ongoing), as in real trials. The numbers are
plausible, not fitted to a real study.

Two settings of the subject-level random effects (docs/data_format.md, "Synthetic clinical trial"):

- ``factors=0`` (the default): every test has its own independent random intercept (sd 0.6) and slope
  (sd 0.8 per year), i.e. exactly the model class of one MixedLM per feature;
- ``factors=K`` in 1..3: tests move together, as real panels do. Each subject draws a latent intercept
  ``a ~ N(0, I_K)`` and slope ``b ~ N(0, I_K)``; test ``d`` gets ``0.6 w_d.a + 0.8 w_d.b t`` with the
  fixed unit-norm loading row ``w_d`` of :func:`loadings` (same per-test variances as ``factors=0``,
  but the between-subject covariance of the tests has rank K). ``nonlinearity`` in [0, 1] bends that
  random part ``u`` into ``(1 - nonlinearity) u + nonlinearity tanh(u)`` (saturation).
The fixed effects (drug, age, sex) and the per-visit noise (sd 0.35) are the same in both settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lmmvae.atomic import atomic_output
from lmmvae.data.sets._common import check_fraction, check_positive_int, streams
from lmmvae.data.sets.generators import Generator, Option, register_generator
from lmmvae.errors import ConfigError
from lmmvae.progress import Progress

STUDY = "SYNTH-01"
ARMS = (("PBO", "PLACEBO", 0.0), ("D10", "DRUG 10 MG", 0.5), ("D20", "DRUG 20 MG", 1.0))
VISITS = ((1, "SCREENING", -14), (2, "DAY 1", 1), (3, "WEEK 1", 8), (4, "WEEK 2", 15), (5, "WEEK 4", 29),
          (6, "WEEK 8", 57), (7, "WEEK 12", 85), (8, "WEEK 16", 113), (9, "WEEK 24", 169))
# code: (name, unit, centre, scale, log scale, decimals, drug effect per year at full dose (in sd),
#        age effect per 10 years (sd), female effect (sd))
LABS = {
    "ALT": ("Alanine Aminotransferase", "U/L", 25, 0.4, True, 0, 3.0, 0.0, -0.3),
    "AST": ("Aspartate Aminotransferase", "U/L", 24, 0.35, True, 0, 2.5, 0.0, -0.2),
    "ALP": ("Alkaline Phosphatase", "U/L", 75, 0.3, True, 0, 0.5, 0.1, 0.0),
    "BILI": ("Bilirubin", "umol/L", 9, 0.4, True, 1, 0.8, 0.0, -0.2),
    "CREAT": ("Creatinine", "umol/L", 80, 0.2, True, 0, 0.3, 0.3, -0.8),
    "UREAN": ("Urea Nitrogen", "mmol/L", 5.5, 0.3, True, 1, 0.2, 0.3, -0.2),
    "GLUC": ("Glucose", "mmol/L", 5.4, 0.15, True, 1, 0.0, 0.2, 0.0),
    "HGB": ("Hemoglobin", "g/L", 140, 13, False, 0, -1.0, -0.1, -1.0),
    "WBC": ("Leukocytes", "10^9/L", 6.8, 0.25, True, 1, -2.0, 0.0, 0.0),
    "NEUT": ("Neutrophils", "10^9/L", 4.1, 0.3, True, 2, -3.0, 0.0, 0.0),
    "PLAT": ("Platelets", "10^9/L", 250, 0.25, True, 0, -0.8, -0.1, 0.3),
    "SODIUM": ("Sodium", "mmol/L", 140, 2.5, False, 0, 0.0, 0.0, 0.0),
    "K": ("Potassium", "mmol/L", 4.3, 0.35, False, 1, 0.0, 0.0, 0.0),
    "ALB": ("Albumin", "g/L", 42, 3.5, False, 0, -0.5, -0.2, 0.0),
}
VITALS = {
    "SYSBP": ("Systolic Blood Pressure", "mmHg", 128, 14, False, 0, -2.0, 0.5, -0.3),
    "DIABP": ("Diastolic Blood Pressure", "mmHg", 79, 9, False, 0, -1.5, 0.2, -0.2),
    "PULSE": ("Pulse Rate", "beats/min", 72, 10, False, 0, 0.8, 0.0, 0.3),
    "TEMP": ("Temperature", "C", 36.7, 0.3, False, 1, 0.0, 0.0, 0.0),
    "RESP": ("Respiratory Rate", "breaths/min", 16, 2.2, False, 0, 0.0, 0.0, 0.0),
    "WEIGHT": ("Weight", "kg", 78, 14, False, 1, -0.5, 0.0, -1.0),
}
# AE term: (rate per subject-year on placebo, multiplier at full dose, typical days)
AE_TERMS = {
    "NAUSEA": (0.6, 3.0, 6), "FATIGUE": (0.8, 2.0, 20), "HEADACHE": (1.0, 1.2, 3), "DIARRHOEA": (0.5, 2.5, 5),
    "VOMITING": (0.3, 3.0, 3), "RASH": (0.3, 2.5, 12), "DIZZINESS": (0.4, 1.5, 5), "INSOMNIA": (0.3, 1.3, 15),
    "COUGH": (0.5, 1.0, 10), "PYREXIA": (0.3, 1.2, 4), "CONSTIPATION": (0.3, 1.5, 7), "ARTHRALGIA": (0.4, 1.0, 20),
}
# lab-driven AEs: (lab, threshold in sd of the lab, direction)
LAB_AES = {"NEUTROPENIA": ("NEUT", -1.6, -1), "ALANINE AMINOTRANSFERASE INCREASED": ("ALT", 1.8, 1),
           "ANAEMIA": ("HGB", -2.0, -1)}
TREATS = {"NAUSEA": "ONDANSETRON", "VOMITING": "ONDANSETRON", "DIARRHOEA": "LOPERAMIDE", "HEADACHE": "PARACETAMOL",
          "PYREXIA": "PARACETAMOL", "ARTHRALGIA": "IBUPROFEN", "RASH": "CETIRIZINE", "INSOMNIA": "ZOPICLONE",
          "NEUTROPENIA": "FILGRASTIM", "COUGH": "DEXTROMETHORPHAN"}
CHRONIC = {"AMLODIPINE": 0.25, "ATORVASTATIN": 0.3, "METFORMIN": 0.15, "LEVOTHYROXINE": 0.1, "OMEPRAZOLE": 0.2}
RACES = (("WHITE", 0.7), ("BLACK OR AFRICAN AMERICAN", 0.12), ("ASIAN", 0.13), ("OTHER", 0.05))
# shared-factor setting: each test's panel (its main factor is panel % K) and the sign of its loadings
PANELS = {"ALT": (0, 1), "AST": (0, 1), "ALP": (0, 1), "BILI": (0, 1), "ALB": (0, -1),  # liver
          "HGB": (1, 1), "WBC": (1, 1), "NEUT": (1, 1), "PLAT": (1, 1), "TEMP": (1, -1), "RESP": (1, -1),  # blood count
          "CREAT": (2, 1), "UREAN": (2, 1), "GLUC": (2, 1), "SODIUM": (2, 1), "K": (2, 1),  # renal, metabolic
          "SYSBP": (2, 1), "DIABP": (2, 1), "PULSE": (2, 1), "WEIGHT": (2, 1)}  # and haemodynamic
N_PANELS = 3  # so at most 3 factors: more would repeat the same 3 loading directions
CROSS_LOADING = 0.3  # loading on the factors other than a test's main one, before normalisation


def loadings(factors: int) -> dict[str, np.ndarray]:
    """The fixed loading matrix of the shared-factor setting, one unit-norm row ``w_d`` [K] per test.

    ``w_d[k] = sign_d * (1 if k == panel_d % K else CROSS_LOADING)``, then divided by its norm, so a
    test's random intercept and slope keep the variances of ``factors=0`` (0.6^2, 0.8^2 per year^2).
    """
    rows = {}
    for code in {**LABS, **VITALS}:
        panel, sign = PANELS[code]
        row = np.full(factors, CROSS_LOADING)  # [K]
        row[panel % factors] = 1.0
        rows[code] = sign * row / np.linalg.norm(row)
    return rows


def _value(spec, z: float) -> float:
    centre, scale, log, decimals = spec[2], spec[3], spec[4], spec[5]
    value = np.exp(np.log(centre) + scale * z) if log else centre + scale * z
    return round(float(value), decimals)


def _random_effects(rng: np.random.Generator, tests, loading):
    """Per-test random intercept and slope (in sd of the test): independent, or through K factors."""
    if loading is None:  # factors=0: the draws (and so the bytes) of the original generator
        intercept = {code: rng.normal(0, 0.6) for code in tests}  # subject level, in sd of the test
        slope = {code: rng.normal(0, 0.8) for code in tests}  # per year
        return intercept, slope
    k = len(next(iter(loading.values())))
    a, b = rng.normal(0, 1, k), rng.normal(0, 1, k)  # [K] latent intercept and slope
    return ({code: 0.6 * float(loading[code] @ a) for code in tests},
            {code: 0.8 * float(loading[code] @ b) for code in tests})


def _subject(rng: np.random.Generator, number: int, loading=None, nonlinearity: float = 0.0):
    usubjid = f"{STUDY}-{1001 + number}"
    armcd, arm, dose = ARMS[rng.integers(len(ARMS))]
    age = int(np.clip(rng.normal(58, 11), 18, 85))
    female = bool(rng.random() < 0.5)
    race = RACES[rng.choice(len(RACES), p=[p for _, p in RACES])][0]
    dm = dict(STUDYID=STUDY, DOMAIN="DM", USUBJID=usubjid, SUBJID=str(1001 + number), SITEID=f"{rng.integers(1, 9):02d}",
              AGE=age, AGEU="YEARS", SEX="F" if female else "M", RACE=race, ARMCD=armcd, ARM=arm)
    n_visits = len(VISITS)
    for k in range(3, len(VISITS)):  # dropout after each visit from the third on
        if rng.random() < 0.07:
            n_visits = k
            break
    tests = {**LABS, **VITALS}
    intercept, slope = _random_effects(rng, tests, loading)
    sensitivity = rng.lognormal(0, 0.4)  # how strongly the drug acts on this subject
    findings, lows, days = [], {}, []
    for visitnum, visit, visitdy in VISITS[:n_visits]:
        day = visitdy if visitdy == 1 else visitdy + int(rng.integers(-2, 3))
        days.append(day)
        years = max(day, 0) / 365.25
        sparse = rng.random() < 0.05  # a visit where little was recorded
        for domain, group in (("LB", LABS), ("VS", VITALS)):
            if domain == "LB" and visit == "WEEK 1" and rng.random() < 0.7:
                continue  # labs often skipped at week 1
            for code, spec in group.items():
                if rng.random() < (0.85 if sparse else 0.06):
                    continue
                u = intercept[code] + slope[code] * years  # the subject's random part
                if nonlinearity:
                    u = (1 - nonlinearity) * u + nonlinearity * np.tanh(u)
                z = (u + spec[6] * dose * sensitivity * years * 2
                     + spec[7] * (age - 58) / 10 + spec[8] * female + rng.normal(0, 0.35))
                if code in ("NEUT", "ALT", "HGB"):
                    lows[(code, day)] = z
                findings.append(dict(domain=domain, code=code, spec=spec, value=_value(spec, z), visitnum=visitnum,
                                     visit=visit, visitdy=visitdy, day=day))
    last_day = days[-1]
    events = []  # (domain, term, start, end or nan)
    for term, (rate, multiplier, typical) in AE_TERMS.items():
        expected = rate * (1 + (multiplier - 1) * dose) * (last_day + 15) / 365.25
        for _ in range(rng.poisson(expected)):
            start = int(rng.integers(1, last_day + 1))
            events.append(("AE", term, start, start + int(rng.gamma(2.0, typical / 2))))
    for term, (code, threshold, direction) in LAB_AES.items():
        for (lab, day), z in sorted(lows.items()):
            if lab == code and direction * z > direction * threshold and day > 0:
                start = max(1, day - int(rng.integers(0, 4)))
                events.append(("AE", term, start, start + int(rng.integers(7, 22))))
    for _, term, start, end in list(events):
        if term in TREATS and rng.random() < 0.6:
            events.append(("CM", TREATS[term], start, end + int(rng.integers(0, 3))))
    for drug, prevalence in CHRONIC.items():
        if rng.random() < prevalence:
            events.append(("CM", drug, -int(rng.integers(30, 2000)), last_day + int(rng.integers(0, 30))))
    events = [(d, t, s, e if rng.random() > 0.08 else np.nan) for d, t, s, e in events]  # ongoing: no end day
    return usubjid, dm, findings, events


def clinical_trial_synthetic(out_dir: str | Path, n_subjects: int = 300, seed: int = 0, progress: bool = False,
                             factors: int = 0, nonlinearity: float = 0.0) -> Path:
    """Write ``dm lb vs ae cm`` as CSV files in ``out_dir`` for ``n_subjects`` synthetic subjects.

    ``factors``: 0, independent random effects per test; K >= 1, through K shared latent factors
    (module doc). ``nonlinearity`` in [0, 1]: saturation of the random part (0: none).
    """
    check_positive_int("--instances", n_subjects)
    check_positive_int("--factors", factors, minimum=0)
    if factors > N_PANELS:
        raise ConfigError(f"--factors must be at most {N_PANELS} (one factor per panel of tests), got {factors}")
    check_fraction("--nonlinearity", nonlinearity, high_open=False)
    loading = loadings(factors) if factors else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {d: [] for d in ("dm", "lb", "vs", "ae", "cm")}
    rngs = streams(seed, n_subjects)
    for number in Progress(range(n_subjects), desc="clinical-trial-synthetic", unit="subject", enabled=progress, delay=1.0):
        usubjid, dm, findings, events = _subject(rngs[number], number, loading, nonlinearity)
        rows["dm"].append(dm)
        seq = {"LB": 0, "VS": 0}
        for f in findings:
            p, spec = f["domain"], f["spec"]
            seq[p] += 1
            rows[p.lower()].append({
                "STUDYID": STUDY, "DOMAIN": p, "USUBJID": usubjid, f"{p}SEQ": seq[p], f"{p}TESTCD": f["code"],
                f"{p}TEST": spec[0], f"{p}ORRES": f["value"], f"{p}ORRESU": spec[1], f"{p}STRESC": str(f["value"]),
                f"{p}STRESN": f["value"], f"{p}STRESU": spec[1], "VISITNUM": f["visitnum"], "VISIT": f["visit"],
                "VISITDY": f["visitdy"], f"{p}DY": f["day"],
            })
        for seq, (p, term, start, end) in enumerate(sorted(events, key=lambda e: (e[0], e[2], e[1])), start=1):
            record = {"STUDYID": STUDY, "DOMAIN": p, "USUBJID": usubjid, f"{p}SEQ": seq,
                      f"{p}STDY": start, f"{p}ENDY": end}
            record.update({"AETERM": term.lower().capitalize(), "AEDECOD": term} if p == "AE"
                          else {"CMTRT": term.lower(), "CMDECOD": term})
            rows[p.lower()].append(record)
    for domain, records in rows.items():
        with atomic_output(out_dir / f"{domain}.csv") as tmp:
            pd.DataFrame.from_records(records).to_csv(tmp, index=False)
    return out_dir


def _run(args) -> str:
    out = clinical_trial_synthetic(args.out_dir, n_subjects=args.instances, seed=args.seed, progress=not args.quiet,
                                   factors=args.factors, nonlinearity=args.nonlinearity)
    return f"wrote {args.instances} synthetic subjects to {out}"


register_generator(Generator("clinical-trial-synthetic", "write a synthetic trial as SDTM CSV files", (
    Option(("--instances", "--subjects"), "SIZE", 300, "subjects (default 300)", dest="instances"),
    Option(("--seed",), "SEED", 0, "random seed (default 0)"),
    Option(("--out-dir",), None, None, "writes DIR/{dm,lb,vs,ae,cm}.csv", required=True, metavar="DIR"),
    Option(("--factors",), ("integer", 0, 3), 0,
           "tests move together through K (1-3) shared subject-level latent factors; "
           "0: independent random effects per test (default 0; docs/data_format.md)", metavar="K"),
    Option(("--nonlinearity",), ("number", 0, 1), 0.0,
           "in [0, 1]: saturation (1 - s) u + s tanh(u) of each test's random part u (default 0)"),
    Option(("--quiet",), "flag", False, "no progress bar"),
), _run, workflow=False))
