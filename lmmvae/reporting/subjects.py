"""Which subjects a figure draws and how their rows are labelled (``data show --png``, the
workflow's trajectories): the subject id with its subject-level covariates, and a choice of
subjects that shows the data's variety (a diseased Health MNIST subject among them)."""

from __future__ import annotations

import numpy as np

from lmmvae.data.h5 import LongitudinalData


def subject_codes(data: LongitudinalData) -> np.ndarray:
    """The codes of the id covariate [N] (all 0 when the data has none)."""
    for cov in data.covariates.values():
        if cov.kind == "id":
            return cov.values
    return np.zeros(data.n_obs, dtype=np.int64)


#: binary covariates of which a subject with value 1 is drawn first when there is one: Health
#: MNIST's diseased subjects show the effect the models must learn, healthy ones barely change.
PREFER = ("diseasePresence",)


def _subject_level(data: LongitudinalData) -> list[str]:
    """Covariates constant within every subject (sex, diseasePresence; not age or diseaseAge)."""
    subject = subject_codes(data)
    names = []
    for name, cov in data.covariates.items():
        if cov.kind in ("id", "time"):
            continue
        order = np.lexsort((cov.values, subject))
        same_subject = subject[order][1:] == subject[order][:-1]
        if not np.any(same_subject & (cov.values[order][1:] != cov.values[order][:-1])):
            names.append(name)
    return names


def subject_covariates(data: LongitudinalData, code: int, names: list[str] | None = None) -> dict[str, object]:
    """The subject-level covariates of subject ``code`` (constant within every subject: sex,
    diseasePresence, ...; ``names`` if given) by name, categorical ones as their level."""
    rows = np.flatnonzero(subject_codes(data) == code)
    out = {}
    for name in (_subject_level(data) if names is None else names) if rows.size else []:
        cov = data.covariates[name]
        value = cov.values[rows[0]]
        out[name] = cov.levels[int(value)] if cov.levels is not None else (
            int(value) if cov.kind == "binary" else float(value))
    return out


def subject_label(data: LongitudinalData, code: int, max_covariates: int = 4) -> str:
    """``subject <id>`` and, one per line, up to ``max_covariates`` of its constant covariates."""
    levels = next((c.levels for c in data.covariates.values() if c.kind == "id"), None)
    name = levels[code] if levels is not None else code
    static = list(subject_covariates(data, code).items())[:max_covariates]
    return "\n".join([f"subject {name}"] + [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in static])


def choose_subjects(data: LongitudinalData, candidates, n_subjects: int) -> list[int]:
    """``n_subjects`` of ``candidates`` (subject codes, in order of preference) that show the
    data's variety: first one with value 1 of a :data:`PREFER` covariate (a diseased subject) if
    any, then, greedily, the one adding most unseen values of the constant binary and categorical
    covariates (the lowest code on ties)."""
    candidates = [int(c) for c in candidates]
    names = _subject_level(data)
    described = {c: {(k, str(v)) for k, v in subject_covariates(data, c, names).items()
                     if data.covariates[k].kind in ("binary", "categorical")} for c in candidates}
    chosen: list[int] = []
    for name in PREFER:
        hit = next((c for c in candidates if (name, "1") in described[c]), None)
        if hit is not None and hit not in chosen and len(chosen) < n_subjects:
            chosen.append(hit)
    while len(chosen) < min(n_subjects, len(candidates)):
        seen = set().union(*(described[c] for c in chosen)) if chosen else set()
        rest = [c for c in candidates if c not in chosen]
        chosen.append(max(rest, key=lambda c: (len(described[c] - seen), -rest.index(c))))
    return chosen
