"""The paper's claims, decided by a rule written before the run: ``results/tables/claims.md``.

A claim is a list of **comparisons**, each "model X is ahead of (or not behind) model Y on metric M
of an experiment" — or "model X at sweep value b is not behind itself at sweep value a" for the
basis-function claims. The config's ``claims:`` mapping states them (config/default.yaml), so the
words of a verdict are fixed before any number exists; this module only applies the rule.

**The rule (paired over seeds).** For each unit — a seed, or a seed pair for ``mcc_seeds`` — the
gap ``d_u`` is how much better X is than Y (``Y − X`` for a metric where lower is better, ``X − Y``
where higher is). A row without seeds (the classical models: one deterministic fit) is paired with
every unit of the other row. With ``n`` units, mean gap ``d̄`` and standard error ``se = sd(d) / √n``:

* **X ahead** when ``d_u > 0`` in every unit and ``d̄ > 2 se``;
* **Y ahead** when the same holds with the roles swapped;
* **tie** otherwise (neither is ahead by the rule: the gap is within the seeds' noise);
* **too few seeds** when ``n < MIN_UNITS``; **not run** when a row is missing;
* **not converged** when some run of X or Y hit its epoch budget instead of stopping early (the
  metrics table's ``stopped_early``): models are compared only after they converged, so the gap is
  shown but decides nothing. Classical rows have no epochs and count as converged.

A comparison of kind ``ahead`` holds when X is ahead; of kind ``not_behind`` when Y is not ahead.
A claim is **reproduced** when every comparison holds, **not reproduced** when none does, **partly
reproduced** otherwise, and **undecided** when a comparison could not be decided (too few seeds or
not run) and the others do not already settle it.

Report jobs do not import torch: numpy and pandas only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmmvae.errors import ConfigError
from lmmvae.reporting.experiments import HIGHER_IS_BETTER

#: fewest units (seeds, or seed pairs) for a comparison to be decided
MIN_UNITS = 3
#: the gap must exceed this many standard errors of the mean gap
N_SE = 2.0
KINDS = ("ahead", "not_behind")
#: outcomes that decide nothing
UNDECIDED = ("too few seeds", "not run", "not converged")


@dataclass(frozen=True)
class Outcome:
    """One comparison: who is ahead by the rule, and the numbers behind it."""

    verdict: str  # "X ahead" | "Y ahead" | "tie" | "too few seeds" | "not run" | "not converged"
    mean_x: float
    mean_y: float
    gap: float  # mean of d_u (positive: X better)
    se: float  # standard error of the mean gap
    n: int  # units


def decide(x: pd.Series, y: pd.Series, higher_is_better: bool) -> Outcome:
    """Apply the paired rule to two rows of per-unit values (index: the unit, e.g. the seed).

    A row of one value with index ``None`` (a classical fit) is paired with every unit of the other.
    """
    x, y = _broadcast(x, y)
    common = x.index.intersection(y.index)
    if x.empty or y.empty:
        return Outcome("not run", _mean(x), _mean(y), math.nan, math.nan, 0)
    gaps = (x[common] - y[common]) if higher_is_better else (y[common] - x[common])  # [n]
    gaps = gaps.to_numpy(dtype=np.float64)
    n = int(gaps.size)
    gap = float(gaps.mean()) if n else math.nan
    se = float(gaps.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    outcome = dict(mean_x=float(x[common].mean()), mean_y=float(y[common].mean()), gap=gap, se=se, n=n)
    if n < MIN_UNITS:
        return Outcome("too few seeds", **outcome)
    if (gaps > 0).all() and gap > N_SE * se:
        return Outcome("X ahead", **outcome)
    if (gaps < 0).all() and -gap > N_SE * se:
        return Outcome("Y ahead", **outcome)
    return Outcome("tie", **outcome)


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan


def _broadcast(x: pd.Series, y: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A single seedless value (classical row) repeated on the other row's units."""
    if len(x) == 1 and x.index[0] is None and len(y):
        x = pd.Series(float(x.iloc[0]), index=y.index)
    if len(y) == 1 and y.index[0] is None and len(x):
        y = pd.Series(float(y.iloc[0]), index=x.index)
    return x, y


def holds(kind: str, outcome: Outcome) -> bool | None:
    """Whether a comparison of ``kind`` holds; ``None`` when the rule could not decide."""
    if outcome.verdict in UNDECIDED:
        return None
    if kind == "ahead":
        return outcome.verdict == "X ahead"
    return outcome.verdict != "Y ahead"


def claim_verdict(results: list[bool | None]) -> str:
    """The claim's word from its comparisons (module docstring)."""
    decided = [r for r in results if r is not None]
    if len(decided) < len(results):
        if decided and not all(decided) and any(decided):
            return "partly reproduced"
        return "undecided"
    if all(decided):
        return "reproduced"
    return "partly reproduced" if any(decided) else "not reproduced"


def _row(frame: pd.DataFrame, experiment: dict, model: str, sweep_value: str | None) -> pd.DataFrame:
    """The metrics-table rows of one comparison side: the experiment's data set, the model (a swept
    model's rows carry its base name in ``base_model``), at ``sweep_value`` (rows without one, e.g. an
    unswept reference, are kept)."""
    named = frame["model"] == model
    if "base_model" in frame:
        named |= frame["base_model"] == model
    rows = frame[(frame["dataset"] == experiment["dataset"]) & named]
    if sweep_value is not None and "sweep_value" in rows:
        rows = rows[(rows["sweep_value"].astype(str) == str(sweep_value)) | rows["sweep_value"].isna()]
    return rows


def converged(frame: pd.DataFrame, experiment: dict, model: str, sweep_value: str | None) -> bool:
    """Whether every run of a row stopped early (False when one hit its epoch budget); a row whose
    runs say nothing of their training (classical fits, older tables) counts as converged."""
    if "stopped_early" not in frame:
        return True
    rows = _row(frame, experiment, model, sweep_value)
    flags = rows[rows["seed_b"].isna()]["stopped_early"].dropna()
    return bool(flags.map(lambda v: str(v).lower() in ("true", "1", "1.0")).all())


def unit_values(frame: pd.DataFrame, experiment: dict, model: str, metric: str,
                sweep_value: str | None) -> pd.Series:
    """Per-unit values of one row: indexed by seed (``mcc_seeds``: by the pair), or ``None`` for a
    seedless classical row."""
    rows = _row(frame, experiment, model, sweep_value)
    rows = rows[rows["metric"] == metric]
    rows = rows[np.isfinite(rows["value"].astype(float))]
    if rows.empty:
        return pd.Series(dtype=float)
    if rows["variant"].isin(["mixedlm", "mean"]).all():
        return pd.Series([float(rows["value"].iloc[0])], index=[None])
    if metric == "mcc_seeds":
        index = [tuple(sorted((int(a), int(b)))) for a, b in zip(rows["seed"], rows["seed_b"])]
    else:
        index = [int(s) for s in rows["seed"]]
    return pd.Series(rows["value"].astype(float).to_numpy(), index=index).groupby(level=0).mean()


@dataclass(frozen=True)
class Comparison:
    """One line of a claim: ``x`` (at sweep value ``x_at``) against ``y`` (at ``y_at``)."""

    experiment: str
    metric: str
    x: str
    y: str
    kind: str = "ahead"
    x_at: str | None = None
    y_at: str | None = None

    def words(self) -> str:
        at = lambda name, value: name if value is None else f"{name} ({value})"  # noqa: E731
        relation = "ahead of" if self.kind == "ahead" else "not behind"
        return f"{at(self.x, self.x_at)} {relation} {at(self.y, self.y_at)}: {self.metric}, {self.experiment}"


@dataclass(frozen=True)
class Claim:
    name: str
    text: str
    source: str
    comparisons: tuple[Comparison, ...]
    missing: int = 0  # comparisons of the claim that this run does not have (a trimmed config)


def parse_claims(spec: dict, experiments: dict[str, dict]) -> list[Claim]:
    """The config's ``claims:`` mapping, checked against its experiments (one-line errors)."""
    claims = []
    for name, entry in spec.items():
        where = f"claims.{name}"
        if not isinstance(entry, dict) or not entry.get("compare"):
            raise ConfigError(f"{where}: needs `claim:` and a non-empty `compare:` list")
        comparisons = []
        for k, item in enumerate(entry["compare"]):
            at = f"{where}.compare[{k}]"
            unknown = sorted(set(item) - {"experiment", "metric", "x", "y", "kind", "x_at", "y_at"})
            if unknown:
                raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}")
            if item.get("experiment") not in experiments:
                raise ConfigError(f"{at}: experiment {item.get('experiment')!r} is not in the config's experiments")
            if item.get("kind", "ahead") not in KINDS:
                raise ConfigError(f"{at}: kind must be one of {', '.join(KINDS)}, got {item.get('kind')!r}")
            text = {key: (None if item.get(key) is None else str(item[key])) for key in ("x_at", "y_at")}
            comparisons.append(Comparison(str(item["experiment"]), str(item["metric"]), str(item["x"]),
                                          str(item["y"]), str(item.get("kind", "ahead")), **text))
        missing = entry.get("missing", 0)
        if not isinstance(missing, int) or isinstance(missing, bool) or missing < 0:
            raise ConfigError(f"{where}: missing must be a count of comparisons, got {missing!r}")
        claims.append(Claim(name, str(entry.get("claim", name)), str(entry.get("source", "")), tuple(comparisons),
                            missing))
    return claims


def evaluate(frame: pd.DataFrame, claims: list[Claim], experiments: dict[str, dict]) -> list[tuple[Claim, list[Outcome], str]]:
    """Every claim's comparisons decided on the metrics table, and the claim's verdict."""
    results = []
    for claim in claims:
        outcomes = []
        for c in claim.comparisons:
            experiment = experiments[c.experiment]
            x = unit_values(frame, experiment, c.x, c.metric, c.x_at)
            y = unit_values(frame, experiment, c.y, c.metric, c.y_at)
            outcome = decide(x, y, c.metric in HIGHER_IS_BETTER)
            if outcome.verdict not in UNDECIDED and not (converged(frame, experiment, c.x, c.x_at)
                                                         and converged(frame, experiment, c.y, c.y_at)):
                outcome = Outcome("not converged", outcome.mean_x, outcome.mean_y, outcome.gap, outcome.se, outcome.n)
            outcomes.append(outcome)
        verdict = claim_verdict([holds(c.kind, o) for c, o in zip(claim.comparisons, outcomes)]
                                + [None] * claim.missing)  # comparisons not in this run: not decided
        results.append((claim, outcomes, verdict))
    return results


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.4g}"


def to_markdown(results: list[tuple[Claim, list[Outcome], str]]) -> str:
    """One row per comparison; the claim and its verdict on its first row."""
    lines = [f"Rule: paired over seeds, X is ahead when it is better in every seed and the mean gap exceeds "
             f"{N_SE:g} standard errors (at least {MIN_UNITS} seeds or seed pairs); otherwise a tie. A comparison "
             f"where a run of X or Y hit its epoch budget (not converged) decides nothing.", "",
             "| claim | comparison | X | Y | gap ± se (n) | outcome | verdict |",
             "| --- | --- | --: | --: | --: | --- | --- |"]
    for claim, outcomes, verdict in results:
        for k, (c, o) in enumerate(zip(claim.comparisons, outcomes)):
            head = f"{claim.text}" + (f" ({claim.source})" if claim.source else "") if k == 0 else ""
            if k == 0 and claim.missing:
                head += f"; {claim.missing} comparison(s) not in this run"
            gap = f"{_number(o.gap)} ± {_number(o.se)} ({o.n})" if o.n else "–"
            word = {"X ahead": c.x, "Y ahead": c.y}.get(o.verdict, o.verdict)
            word = f"{word} ahead" if o.verdict in ("X ahead", "Y ahead") else word
            lines.append(f"| {head} | {c.words()} | {_number(o.mean_x)} | {_number(o.mean_y)} | {gap} | {word} | "
                         f"{'**' + verdict + '**' if k == 0 else ''} |")
    return "\n".join(lines) + "\n"
