"""The claims rule (lmmvae/reporting/claims.py): paired over seeds, hand-computed cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lmmvae.errors import ConfigError
from lmmvae.reporting.claims import claim_verdict, decide, evaluate, holds, parse_claims, to_markdown


def series(values, index=None):
    return pd.Series(values, index=index if index is not None else list(range(len(values))), dtype=float)


def test_ahead_needs_every_seed_and_two_standard_errors():
    # gaps (lower is better: y - x) = 0.10, 0.12, 0.14: mean 0.12, sd 0.02, se 0.02/sqrt(3) = 0.01155
    out = decide(series([1.0, 1.0, 1.0]), series([1.10, 1.12, 1.14]), higher_is_better=False)
    assert out.verdict == "X ahead" and out.n == 3
    assert out.gap == pytest.approx(0.12) and out.se == pytest.approx(0.02 / math.sqrt(3))
    # one seed the other way round: a tie, however large the mean gap
    assert decide(series([1.0, 1.0, 1.0]), series([2.0, 2.0, 0.99]), False).verdict == "tie"
    # every seed the same way but the mean gap within 2 se: gaps 0.01, 0.01, 1.0 -> mean 0.34, se 0.33
    assert decide(series([1.0, 1.0, 1.0]), series([1.01, 1.01, 2.0]), False).verdict == "tie"
    # the other direction, and higher-is-better metrics (MCC)
    assert decide(series([2.0, 2.1, 2.2]), series([1.0, 1.0, 1.1]), False).verdict == "Y ahead"
    assert decide(series([0.8, 0.82, 0.81]), series([0.5, 0.52, 0.5]), True).verdict == "X ahead"


def test_pairs_by_unit_and_needs_three():
    x = series([1.0, 1.0], index=[0, 1])
    assert decide(x, series([2.0, 2.0], index=[0, 1]), False).verdict == "too few seeds"
    # only common seeds are paired: seed 2 of y has no partner
    out = decide(series([1.0, 1.0, 1.0], [0, 1, 5]), series([2.0, 2.0, 2.0], [0, 1, 2]), False)
    assert out.n == 2 and out.verdict == "too few seeds"
    assert decide(series([]), series([1.0]), False).verdict == "not run"


def test_a_seedless_classical_row_is_paired_with_every_seed():
    classical = pd.Series([0.5], index=[None])
    out = decide(series([0.40, 0.42, 0.44]), classical, higher_is_better=False)
    assert out.verdict == "X ahead" and out.mean_y == 0.5 and out.gap == pytest.approx(0.08)


def test_claim_words():
    assert claim_verdict([True, True]) == "reproduced"
    assert claim_verdict([False, False]) == "not reproduced"
    assert claim_verdict([True, False]) == "partly reproduced"
    assert claim_verdict([True, None]) == "undecided"
    assert claim_verdict([True, False, None]) == "partly reproduced"
    tie = decide(series([1.0, 1.0, 1.0]), series([1.0, 1.1, 0.9]), False)
    assert holds("ahead", tie) is False and holds("not_behind", tie) is True


def metrics_frame():
    rows = []
    for seed, (a, b) in enumerate([(0.30, 0.40), (0.31, 0.42), (0.29, 0.41)]):
        for value, mse in (("1", a + 0.2), ("4", a)):  # a swept model: its base name and sweep values
            rows.append(dict(dataset="d", model=f"swept_n{value}", base_model="swept", variant="olmm", seed=seed,
                             seed_b=None, metric="mse_test", value=mse, sweep_value=value))
        rows += [dict(dataset="d", model="lmm", variant="olmm", seed=seed, seed_b=None, metric="mse_test",
                      value=a, sweep_value=None),
                 dict(dataset="d", model="gp", variant="svgpvae", seed=seed, seed_b=None, metric="mse_test",
                      value=b, sweep_value=None)]
    for seed in range(3):  # a classical row: the same file listed for every seed
        rows.append(dict(dataset="d", model="mixedlm", variant="mixedlm", seed=seed, seed_b=None,
                         metric="mse_test", value=0.35, sweep_value=None))
    for (s, t), v in {(0, 1): 0.7, (0, 2): 0.72, (1, 2): 0.71}.items():
        rows.append(dict(dataset="d", model="lmm", variant="olmm", seed=s, seed_b=t, metric="mcc_seeds", value=v,
                         sweep_value=None))
        rows.append(dict(dataset="d", model="vae", variant="vae", seed=s, seed_b=t, metric="mcc_seeds",
                         value=v - 0.3, sweep_value=None))
    return pd.DataFrame(rows)


def test_claims_from_a_metrics_table():
    experiments = {"e": {"dataset": "d"}}
    spec = {"c1": {"claim": "LMM beats GP and MixedLM", "compare": [
        {"experiment": "e", "metric": "mse_test", "x": "lmm", "y": "gp"},
        {"experiment": "e", "metric": "mse_test", "x": "lmm", "y": "mixedlm"}]},
        "c2": {"claim": "identifiable", "compare": [{"experiment": "e", "metric": "mcc_seeds", "x": "lmm", "y": "vae"}]},
        "c3": {"claim": "more basis functions help", "compare": [
            {"experiment": "e", "metric": "mse_test", "x": "swept", "x_at": 4, "y": "swept", "y_at": 1}]}}
    results = evaluate(metrics_frame(), parse_claims(spec, experiments), experiments)
    assert [verdict for _, _, verdict in results] == ["reproduced", "reproduced", "reproduced"]
    assert results[2][1][0].gap == pytest.approx(0.2)
    assert results[1][1][0].n == 3  # three seed pairs
    text = to_markdown(results)
    assert "lmm ahead of gp: mse_test, e" in text and "**reproduced**" in text
    partial = parse_claims({"c1": {**spec["c1"], "missing": 2}}, experiments)  # a trimmed config
    (claim, _, verdict), = evaluate(metrics_frame(), partial, experiments)
    assert verdict == "undecided" and "2 comparison(s) not in this run" in to_markdown([(claim, _, verdict)])
    with pytest.raises(ConfigError, match="claims.c1.compare.0.: experiment 'nope'"):
        parse_claims({"c1": {"claim": "x", "compare": [{"experiment": "nope", "metric": "mse_test", "x": "a",
                                                        "y": "b"}]}}, experiments)


def test_a_run_that_hit_its_budget_decides_nothing():
    """Models are compared only after they converged: one run of the peer that hit its epoch budget
    (stopped_early False) makes the comparison 'not converged', and the claim undecided."""
    experiments = {"e": {"dataset": "d"}}
    spec = {"c1": {"claim": "LMM beats GP and MixedLM", "compare": [
        {"experiment": "e", "metric": "mse_test", "x": "lmm", "y": "gp"},
        {"experiment": "e", "metric": "mse_test", "x": "lmm", "y": "mixedlm"}]}}
    frame = metrics_frame()
    frame["stopped_early"] = [None if v in ("mixedlm", "vae") else True for v in frame["variant"]]
    claims = parse_claims(spec, experiments)
    assert evaluate(frame, claims, experiments)[0][2] == "reproduced"
    frame.loc[(frame["model"] == "gp") & (frame["seed"] == 1), "stopped_early"] = False
    (claim, outcomes, verdict), = evaluate(frame, claims, experiments)
    assert [o.verdict for o in outcomes] == ["not converged", "X ahead"] and verdict == "undecided"
    assert outcomes[0].gap == pytest.approx(0.11)  # the gap is still shown
    assert "| not converged |" in to_markdown([(claim, outcomes, verdict)])
