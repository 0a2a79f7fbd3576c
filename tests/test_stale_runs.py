"""One rule decides whether an unfinished run can be resumed (lmmvae.runs.rundir.stale_reason):
the resumed fit refuses what the rule rejects, and ``lmmvae fit --resume --restart-stale`` starts
afresh for the same reasons."""

import json
from pathlib import Path

import pytest

from lmmvae.cli.models import _stale_run
from lmmvae.errors import RunError
from lmmvae.runs import rundir

MODEL = {"variant": "olmm", "latent_dim": 2, "device": "cpu"}


def _run(tmp_path: Path, seed: int = 0, sha: str | None = "abc") -> Path:
    out = tmp_path / "run"
    out.mkdir()
    info = {"seed": seed, "data_dim": 3, **({"data_sha256": sha} if sha else {})}
    (out / "config.json").write_text(json.dumps({"model": MODEL, "info": info}))
    return out


@pytest.mark.parametrize("config,seed,sha,expected", [
    (MODEL, 0, "abc", None),
    ({**MODEL, "device": "cuda"}, 0, "abc", None),  # where a run trains is not what it trains
    ({**MODEL, "latent_dim": 3}, 0, "abc", "another config"),
    (MODEL, 1, "abc", "another seed"),
    (MODEL, 0, "def", "other data"),
    (MODEL, 0, None, None),  # the data's hash not known: not compared
])
def test_stale_reason(tmp_path, config, seed, sha, expected):
    assert rundir.stale_reason(_run(tmp_path), config, seed, sha) == expected


def test_the_resumed_fit_and_restart_stale_apply_the_same_rule(tmp_path):
    out = _run(tmp_path)
    plan = rundir.RunPlan(out, resume=True, overwrite=False)
    with pytest.raises(RunError, match="another config or seed"):
        plan.start({**MODEL, "latent_dim": 3}, 0, {"data_sha256": "abc"}, lambda d: None)
    with pytest.raises(RunError, match="was trained on"):
        plan.start(MODEL, 0, {"data_sha256": "def", "data_path": "other.h5"}, lambda d: None)
    data = tmp_path / "d.h5"
    data.write_bytes(b"not the training data")
    assert _stale_run(out, {**MODEL, "latent_dim": 3}, 0, str(data)) == "another config"
    assert _stale_run(out, MODEL, 0, str(data)) == "other data"  # another file's bytes
    assert _stale_run(out, MODEL, 0, str(tmp_path / "absent.h5")) is None
    (out / "config.json").write_text("{")
    assert _stale_run(out, MODEL, 0, str(data)) == "unreadable config.json"
