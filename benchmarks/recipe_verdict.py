"""The deciding rule of a recipe study over several data sets × seeds (docs/recipe_study.md,
"Defaults that generalise"): which one-at-a-time candidate replaces a library default.

Rule (fixed before the runs): for each model and candidate setting, pair every (data set, seed) run
of the candidate with the ``defaults`` run of the same data set and seed; the candidate **replaces**
the default when (a) the geometric mean over those pairs of ``val_mse(candidate) / val_mse(defaults)``
is below ``threshold`` (0.97) and (b) its seed-mean validation MSE is lower than the default's on at
least ``min_share`` (¾, i.e. 3 of 4) of the data sets. Among candidates of one key that pass, the
lowest geometric mean wins. A key shared by the models (every key not under ``prior.``, e.g. ``lr``)
changes only when the same value is chosen for every model that ran it; otherwise the default stays
for all. A verdict on fewer pairs than planned is marked *incomplete*.
"""

from __future__ import annotations

import math
import statistics

from benchmarks import harness

THRESHOLD = 0.97
MIN_SHARE = 0.75


def _key(setting: str) -> str:
    """``"prior.q_A=point"`` → ``"prior.q_A"`` (the library key a candidate changes)."""
    return setting.split("=", 1)[0]


def by_dataset(rows: list[dict]) -> list[dict]:
    """Mean ± sd of the validation MSE over seeds per (data set, model, setting), and the seed-mean
    ratio to the same data set's and model's ``defaults`` row."""
    keys = list(dict.fromkeys((r["dataset"], r["model"], r["setting"]) for r in rows))
    out = []
    for dataset, model, setting in keys:
        runs = [r for r in rows if (r["dataset"], r["model"], r["setting"]) == (dataset, model, setting)]
        values = [float(r["val_mse"]) for r in runs]
        epochs = [r.get("best_epoch") for r in runs if r.get("best_epoch") not in (None, "")]
        out.append({"dataset": dataset, "model": model, "setting": setting, "seeds": len(runs),
                    "val_mse": statistics.fmean(values),
                    "val_mse_sd": statistics.stdev(values) if len(values) > 1 else math.nan,
                    "best_epoch": statistics.fmean(float(e) for e in epochs) if epochs else math.nan,
                    "stopped_early": f"{sum(str(r.get('stopped_early')) == 'True' for r in runs)}/{len(runs)}",
                    "seconds": statistics.fmean(float(r["seconds"]) for r in runs)})
    base = {(r["dataset"], r["model"]): r["val_mse"] for r in out if r["setting"] == "defaults"}
    for r in out:
        ref = base.get((r["dataset"], r["model"]))
        r["ratio"] = r["val_mse"] / ref if ref else math.nan
    return out


def verdict(rows: list[dict], threshold: float = THRESHOLD, min_share: float = MIN_SHARE,
            planned_pairs: int | None = None) -> list[dict]:
    """One row per (model, candidate): geometric-mean ratio to the defaults over paired
    (data set, seed) runs, data sets won on the seed-mean, and the rule's verdict (module docstring)."""
    default = {(r["dataset"], r["model"], int(r["seed"])): float(r["val_mse"])
               for r in rows if r["setting"] == "defaults"}
    out = []
    for model, setting in dict.fromkeys((r["model"], r["setting"]) for r in rows if r["setting"] != "defaults"):
        runs = [r for r in rows if (r["model"], r["setting"]) == (model, setting)
                and (r["dataset"], model, int(r["seed"])) in default]
        if not runs:
            continue
        logs = [math.log(float(r["val_mse"]) / default[(r["dataset"], model, int(r["seed"]))]) for r in runs]
        datasets = list(dict.fromkeys(r["dataset"] for r in runs))
        wins = 0
        for d in datasets:
            mine = [r for r in runs if r["dataset"] == d]
            cand = statistics.fmean(float(r["val_mse"]) for r in mine)
            ref = statistics.fmean(default[(d, model, int(r["seed"]))] for r in mine)
            wins += cand < ref
        geo = math.exp(statistics.fmean(logs))
        need = math.ceil(min_share * len(datasets) - 1e-9)
        passes = geo < threshold and wins >= need
        out.append({"model": model, "setting": setting, "key": _key(setting), "pairs": len(runs),
                    "datasets": len(datasets), "geo_ratio": geo, "wins": f"{wins}/{len(datasets)}",
                    "passes": passes})
    for model, key in dict.fromkeys((r["model"], r["key"]) for r in out):
        passing = sorted((r for r in out if (r["model"], r["key"]) == (model, key) and r["passes"]),
                         key=lambda r: r["geo_ratio"])
        for r in out:
            if (r["model"], r["key"]) == (model, key):
                chosen = bool(passing) and r is passing[0]
                r["verdict"] = ("replaces the default" if chosen else
                                "passes, a better value of the key wins" if r["passes"] else "default stays")
                if chosen and not r["key"].startswith("prior.") and not _chosen_for_all(out, passing, r):
                    r["verdict"] = "default stays (shared key: not chosen for every model)"
                if planned_pairs and r["pairs"] < planned_pairs:
                    r["verdict"] += f" (incomplete: {r['pairs']} of {planned_pairs} pairs)"
    return out


def _chosen_for_all(out: list[dict], passing: list[dict], row: dict) -> bool:
    """Whether ``row``'s setting is the best passing value of its key for every model that ran the key."""
    for model in {r["model"] for r in out if r["key"] == row["key"]}:
        best = sorted((r for r in out if r["model"] == model and r["key"] == row["key"] and r["passes"]),
                      key=lambda r: r["geo_ratio"])
        if not best or best[0]["setting"] != row["setting"]:
            return False
    return True


DATASET_COLUMNS = [
    harness.Column("dataset", "data set"),
    harness.Column("model", "model"),
    harness.Column("setting", "setting (over library defaults)"),
    harness.Column("val_mse", "validation MSE, seed mean", "{:.4f}"),
    harness.Column("val_mse_sd", "± sd", "{:.4f}"),
    harness.Column("ratio", "÷ defaults", "{:.3f}"),
    harness.Column("seeds", "seeds"),
    harness.Column("best_epoch", "best epoch", "{:.0f}"),
    harness.Column("stopped_early", "stopped early"),
    harness.Column("seconds", "s", "{:.0f}"),
]
VERDICT_COLUMNS = [
    harness.Column("model", "model"),
    harness.Column("setting", "candidate"),
    harness.Column("geo_ratio", "geometric mean ÷ defaults (data sets × seeds)", "{:.3f}"),
    harness.Column("wins", "data sets better (seed mean)"),
    harness.Column("pairs", "paired runs"),
    harness.Column("verdict", "verdict"),
]


def markdown(rows: list[dict], threshold: float = THRESHOLD, min_share: float = MIN_SHARE,
             planned_pairs: int | None = None) -> str:
    """The per-data-set table and the verdict table of a multi-data-set study."""
    return "\n\n".join([harness.markdown_table(by_dataset(rows), DATASET_COLUMNS),
                        f"Verdict (rule: geometric mean < {threshold} and better on ≥ {min_share:.0%} of the data sets):",
                        harness.markdown_table(verdict(rows, threshold, min_share, planned_pairs), VERDICT_COLUMNS)])
