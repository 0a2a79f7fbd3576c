"""Writes examples/visits.csv and examples/new_visits.csv, the README's quick-start tables.

A simulated trial (not real data): 30 patients seen monthly for 8 months (0-7), sex "F"/"M", three
arms, age; five lab values driven by two latent factors with a patient-level intercept, a time
trend that the arm bends, a sex effect and noise; 15 % of the cells empty. Deterministic:
`python examples/make_visits.py` rewrites the same files.
"""

from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = {"crp": (5.0, 2.0), "hb": (13.0, 1.2), "alt": (30.0, 8.0), "glucose": (5.5, 0.8), "sbp": (130.0, 12.0)}


def visits(n_patients: int = 30, n_months: int = 8, seed: int = 0, missing: float = 0.15) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(2, len(FEATURES)))  # [latent, feature]
    offset = np.array([m for m, _ in FEATURES.values()])
    scale = np.array([s for _, s in FEATURES.values()])
    rows = []
    for p in range(n_patients):
        sex, arm = ("F" if p % 2 else "M"), ["placebo", "low", "high"][p % 3]
        intercept, age = rng.normal(size=2), int(rng.integers(40, 70))
        for month in range(n_months):
            z = intercept + np.array([0.3 * month, 0.8 * (sex == "F")])  # [latent]
            z[1] += {"placebo": 0.0, "low": -0.5, "high": -1.0}[arm] * month / 4
            y = offset + scale * (z @ loadings + rng.normal(scale=0.3, size=len(FEATURES)))
            rows.append({"patient": f"P{p + 1:02d}", "month": month, "sex": sex, "arm": arm, "age": age,
                         **{name: round(float(v), 1) for name, v in zip(FEATURES, y)}})
    frame = pd.DataFrame(rows)
    names = list(FEATURES)
    frame[names] = frame[names].mask(rng.random((len(frame), len(names))) < missing)
    return frame


def new_visits(frame: pd.DataFrame) -> pd.DataFrame:
    """Months 8 and 9 of three known patients and of one patient never seen (P99)."""
    known = frame.drop_duplicates("patient").set_index("patient").loc[["P01", "P02", "P03"], ["sex", "arm", "age"]]
    known.loc["P99"] = ["F", "low", 58]
    rows = [{"patient": p, "month": m, **known.loc[p].to_dict()} for p in known.index for m in (8, 9)]
    return pd.DataFrame(rows)[["patient", "month", "sex", "arm", "age"]]


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    table = visits()
    table.to_csv(here / "visits.csv", index=False)
    new_visits(table).to_csv(here / "new_visits.csv", index=False)
    print(f"wrote {here / 'visits.csv'} ({len(table)} rows) and {here / 'new_visits.csv'}")
