"""Hostile inputs (issue 10): what a careless user or an attacker hands the package, by kind.

code execution (a planted pickle, ``$(...)`` in every config string and key), data files, tables
(CSV), run directories, faults, configs and formulas. Each case asserts one of: a one-line error
naming the file and the fix, nothing left behind, or the right behaviour. Tiny data, 1-epoch models:
the whole module runs in well under a minute on one core. The kill-and-resume fault cases that
already held stay in tests/test_cli.py (identical weights) and tests/test_workflow.py (Snakemake).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

import lmmvae
from lmmvae.cli import main
from lmmvae.design import Design, parse_formula
from lmmvae.errors import ConfigError, DesignError, RunError
from lmmvae.h5 import Covariate, DataFormatError, LongitudinalData, level_key, match_levels, read_h5, write_h5
from lmmvae.loader import recode
from simulate import simulate_lmm

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TINY = REPO / ".test" / "config.yaml"
SETTINGS = dict(variant="olmm", design="~ time + sex + (1 | id)", latent_dim=2, network="mlp", epochs=1,
                batch_size=64, lr=0.005)
MODEL_YAML = "\n".join(f"{k}: {json.dumps(v)}" for k, v in SETTINGS.items()) + "\n"


@pytest.fixture(scope="module")
def sim():
    return simulate_lmm(n_subjects=8, n_times=5, data_dim=4, n_future=1)


@pytest.fixture(scope="module")
def data_file(sim, tmp_path_factory):
    return write_h5(sim, tmp_path_factory.mktemp("data") / "sim.h5")


@pytest.fixture(scope="module")
def finished_run(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    lmmvae.fit(data_file, out=out, progress=False, **SETTINGS)
    return out


def cli(args, capsys) -> tuple[int, str]:
    """Run ``lmmvae ARGS`` in-process; (exit status, stderr)."""
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def one_line_error(rc: int, err: str, *fragments: str) -> str:
    """The CLI failed with exactly one line ``lmmvae: error: ...`` containing every fragment."""
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("lmmvae: error:")]
    assert rc == 2 and len(lines) == 1, err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def model_yaml(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({**SETTINGS, **changes}))
    return path


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


class Payload:
    """An object whose unpickling touches ``marker`` (as os.system would run any command)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# -- code execution ----------------------------------------------------------------------------


def test_no_weights_only_false_anywhere():
    """Every torch.load of the project, its baselines and benchmarks passes weights_only=True."""
    offenders, unsafe = [], "weights_only=" + "False"
    for path in [*REPO.glob("lmmvae/**/*.py"), *REPO.glob("benchmarks/**/*.py"), *REPO.glob("tests/*.py")]:
        text = path.read_text()
        if unsafe in text:
            offenders.append(str(path))
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call and path.name != "test_hostile.py":
                offenders.append(f"{path}: {call}")
    assert not offenders


def test_planted_pickle_in_checkpoint_never_runs(data_file, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "MARKER"
    torch.save({"model": Payload(marker)}, run / "checkpoint.pt")
    # the payload is live: unpickling the checkpoint's data.pkl (what an unsafe load does) runs it
    import zipfile

    with zipfile.ZipFile(run / "checkpoint.pt") as z:
        pickle.loads(z.read(next(n for n in z.namelist() if n.endswith("data.pkl"))))
    assert marker.exists()
    marker.unlink()

    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", run, "--resume",
                   "--quiet"], capsys)
    assert rc == 0, err
    assert not marker.exists()
    warning = [ln for ln in err.splitlines() if ln.startswith("lmmvae: warning:")]
    assert len(warning) == 1 and "checkpoint.pt" in warning[0] and "discarded" in warning[0]
    assert (run / "model.pt").exists()


def test_planted_pickle_in_model_file_is_refused(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    marker = tmp_path / "MARKER"
    with open(run / "model.pt", "wb") as f:
        pickle.dump(Payload(marker), f)
    rc, err = cli(["evaluate", "--run", run, "--data", "nowhere.h5", "--out", tmp_path / "m.json"], capsys)
    one_line_error(rc, err, "model.pt", "unreadable", "retrain")
    assert not marker.exists() and not (tmp_path / "m.json").exists()


PAYLOAD = "$(touch MARKER)"


def _strings_and_keys(node, path=()):
    """Every (path, kind) of a string value or a mapping key in a config tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,), "key"
            yield from _strings_and_keys(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings_and_keys(value, path + (i,))
    elif isinstance(node, str):
        yield path, "value"


def _with_payload(config, path, kind):
    import copy

    config = copy.deepcopy(config)
    node = config
    for step in path[:-1]:
        node = node[step]
    last = path[-1]
    if kind == "key":
        node = {(f"{k}{PAYLOAD}" if k == last else k): v for k, v in node.items()} if isinstance(node, dict) else node
        parent = config
        for step in path[:-2]:
            parent = parent[step]
        if len(path) == 1:
            return node
        parent[path[-2]] = node
    else:
        node[last] = f"{node[last]}{PAYLOAD}"
    return config


def _unquoted(command: str, needle: str) -> list[int]:
    """Offsets of ``needle`` in ``command`` outside single quotes (where a shell would expand it)."""
    hits, quote, i = [], None, 0
    while i < len(command):
        ch = command[i]
        if quote is None and command.startswith(needle, i):
            hits.append(i)
        if quote == "'":
            quote = None if ch == "'" else quote
        elif quote == '"':
            if ch == "\\":
                i += 1
            elif ch == '"':
                quote = None
            elif command.startswith(needle, i):
                hits.append(i)  # $(...) runs inside double quotes too
        elif ch == "\\":
            i += 1
        elif ch in "'\"":
            quote = ch
        i += 1
    return hits


def test_no_config_string_or_key_reaches_a_shell_unquoted(tmp_path):
    """``$(touch MARKER)`` in every string and key of the tiny config: the schema refuses it (names),
    or the dry run prints it only inside single quotes; the printed commands, run by bash with a
    stub ``python``, never create the marker."""
    from lmmvae.reporting.experiments import load_plan

    base = yaml.safe_load(TINY.read_text())
    admitted, refused = [], []
    for path, kind in _strings_and_keys(base):
        try:
            load_plan(_with_payload(base, path, kind), SCHEMA)
        except ConfigError as err:
            assert "\n" not in str(err)
            refused.append((path, kind))
        else:
            admitted.append((path, kind))
    assert refused and admitted  # names are constrained; free text (titles, labels, formulas) is not
    assert all(kind == "value" for _, kind in admitted)  # no key reaches the workflow with a payload

    config = base
    for path, kind in admitted:
        config = _with_payload(config, path, kind)
    load_plan(config, SCHEMA)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakemake = str(Path(sys.executable).parent / "snakemake")
    done = subprocess.run([snakemake, "-n", "--printshellcmds", "--cores", "1", "--directory", str(workdir),
                           "--configfile", str(configfile)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    commands = [ln.split("Shell command: ", 1)[1] for ln in (done.stdout + done.stderr).splitlines()
                if "Shell command: " in ln]
    assert commands
    assert any(PAYLOAD in c for c in commands)  # the payloads do reach the commands ...
    for command in commands:
        assert not _unquoted(command, PAYLOAD), command  # ... but only quoted

    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "python").write_text("#!/bin/sh\nexit 0\n")
    (stub / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, timeout=30)
    assert not list(workdir.rglob("MARKER")) and not (REPO / "MARKER").exists()


# -- data files --------------------------------------------------------------------------------


def _write_raw(path: Path, **replace):
    """A valid file, with datasets/attributes replaced as given (written with h5py directly)."""
    data = simulate_lmm(n_subjects=4, n_times=3, data_dim=2, n_future=1)
    write_h5(data, path)
    with h5py.File(path, "a") as f:
        for key, value in replace.items():
            if key == "format_version":
                f.attrs["format_version"] = value
                continue
            del f[key]
            f[key] = value
            if key.startswith("covariates/"):
                f[key].attrs["kind"] = "continuous"
    return path


@pytest.mark.parametrize("key,value,fragment", [
    ("mask", np.full((12, 2), 256, np.int64), "/mask must contain only 0 and 1, found 256"),
    ("mask", np.full((12, 2), 257, np.int64), "/mask must contain only 0 and 1"),
    ("split", np.full(12, 300, np.int64), "/split must contain only 0 (train)"),
    ("split", np.full(12, -1, np.int64), "/split must contain only"),
    ("format_version", "1", "format_version must be 1"),
    ("format_version", 1.5, "not an integer"),
    ("covariates/time", np.array([b"abc"] * 12), "/covariates/time (continuous) must hold numbers"),
    ("y", np.zeros((12, 2, 2), np.float32), "/y must be 2-D"),
])
def test_malformed_data_file_is_one_line(tmp_path, capsys, key, value, fragment):
    path = _write_raw(tmp_path / "bad.h5", **{key: value})
    rc, err = cli(["data", "show", path], capsys)
    one_line_error(rc, err, str(path), fragment)


def test_file_declaring_more_than_memory_fails_before_reading(tmp_path, capsys):
    path = _write_raw(tmp_path / "huge.h5")
    with h5py.File(path, "a") as f:
        for key in ("y", "mask", "split", "covariates/time", "covariates/sex", "covariates/id"):
            del f[key]
        n = 10**12
        f.create_dataset("y", shape=(n, 1000), dtype="f4", chunks=(1, 1000))
        f.create_dataset("mask", shape=(n, 1000), dtype="u1", chunks=(1, 1000))
        f.create_dataset("split", shape=(n,), dtype="u1", chunks=(1000,))
    assert path.stat().st_size < 10**6
    rc, err = cli(["data", "show", path], capsys)
    one_line_error(rc, err, str(path), "GiB", "memory")


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"garbage, not HDF5\n"])
def test_empty_or_garbage_data_file(tmp_path, capsys, content):
    path = tmp_path / "x.h5"
    path.write_bytes(content)
    rc, err = cli(["data", "show", path], capsys)
    one_line_error(rc, err, str(path), "not a readable HDF5 file")


def test_blank_id_rejected_with_its_row(sim):
    levels = list(sim.covariates["id"].levels)
    levels[3] = ""
    with pytest.raises(DataFormatError, match=r"/covariates/id \(id\) is blank at row 15 \(5 row"):
        LongitudinalData(sim.y, sim.mask, sim.split,
                         {**sim.covariates, "id": Covariate(sim.covariates["id"].values, "id", levels)})


def test_one_id_written_two_ways_is_rejected(sim):
    levels = list(range(8))
    levels[1] = "0.0"
    with pytest.raises(DataFormatError, match=r"levels 0 and '0.0', which are the same id"):
        LongitudinalData(sim.y, sim.mask, sim.split,
                         {**sim.covariates, "id": Covariate(sim.covariates["id"].values, "id", levels)})


def test_ids_match_by_value_in_loader_and_design():
    """12, 12.0, "12" and "12.0" are one subject for the loader and for the design."""
    assert {level_key(v) for v in (12, 12.0, "12", "12.0", np.int64(12), " 12 ")} == {"12"}
    assert level_key("s12") != level_key(12) and level_key(1.5) == level_key("1.50")
    assert match_levels([12.0, "7", "x"], [7, 12]).tolist() == [1, 0, -1]
    assert match_levels(["012"], ["012", "12"]).tolist() == [0]  # exact text wins ...
    assert match_levels([12], ["012", "12.0"]).tolist() == [-1]  # ... an ambiguous key matches nothing
    train = {"id": Covariate(np.array([0, 1, 1]), "id", levels=[7, 12]),
             "c": Covariate(np.array([0, 1, 0]), "categorical", levels=[1, 2])}
    new = LongitudinalData(np.zeros((2, 1)), np.ones((2, 1)), np.zeros(2),
                           {"id": Covariate(np.array(["12.0", "7"], dtype=object), "id"),
                            "c": Covariate(np.array([2.0, 1.0]), "categorical")})
    assert recode(new, {"id": [7, 12], "c": [1, 2]})["id"].tolist() == [1, 0]
    fitted = Design("~ C(c) + (1 | id)").fit(train)
    x = fitted.transform(new.covariates)
    assert x.levels[0].tolist() == [1, 0]  # "12.0" is subject 12, not an unseen one
    assert x.shared[:, 1].tolist() == [1.0, 0.0]  # categorical 2.0 is level 2


def test_unseen_subjects_allowed_with_a_warning_naming_how_many():
    train = {"id": Covariate(np.array([0, 1]), "id", levels=["a", "b"]), "t": Covariate(np.array([0.0, 1.0]), "time")}
    fitted = Design("~ t + (1 | id)").fit(train)
    new = {"id": Covariate(np.array([0, 1, 2, 2]), "id", levels=["a", "z", "y"]), "t": Covariate(np.zeros(4), "time")}
    with pytest.warns(lmmvae.errors.LmmvaeWarning, match=r"2 'id' level\(s\) \(3 row\(s\)\) not seen in training"):
        x = fitted.transform(new)
    assert x.levels[0].tolist() == [0, -1, -1, -1] and (x.values[0][1:] == 0).all()


def test_huge_covariate_is_standardised_not_zeroed(sim, tmp_path):
    """A covariate whose sum of squares overflows: finite statistics, a non-zero column, no Infinity."""
    time = sim.covariates["time"].values * 1e300
    data = LongitudinalData(sim.y, sim.mask, sim.split, {**sim.covariates, "time": Covariate(time, "time")})
    fitted = lmmvae.fit(data, out=tmp_path / "run", progress=False, **SETTINGS)
    text = (tmp_path / "run" / "design.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    column = fitted.design.transform(data.covariates).shared[:, 1]
    train = sim.subset(sim.split_index("train")).covariates
    reference = Design(SETTINGS["design"]).fit(train).transform(sim.covariates).shared[:, 1]
    assert np.isfinite(column).all() and np.allclose(column, reference, atol=1e-5)  # as if unscaled
    extreme = Design("~ x").fit({"x": Covariate(np.array([-1.7e308, 1.7e308, 1.7e308]), "continuous")})
    assert np.isfinite(extreme.transform({"x": np.array([1.7e308])}).shared).all()


def test_value_overflowing_the_standardisation_is_one_line():
    fitted = Design("~ x").fit({"x": Covariate(np.array([0.0, 1e-300, 2e-300]), "continuous")})
    with pytest.raises(DesignError, match=r"x overflows at row 1 \(covariate 'x' is too far outside"):
        fitted.transform({"x": np.array([0.0, 1e10])})


def test_all_missing_file_is_refused_and_leaves_nothing(sim, tmp_path, capsys):
    data = LongitudinalData(sim.y, np.zeros_like(sim.mask), sim.split, sim.covariates)
    path = write_h5(data, tmp_path / "empty.h5")
    rc, err = cli(["fit", "--data", path, "--model", model_yaml(tmp_path), "--out", tmp_path / "run"], capsys)
    one_line_error(rc, err, str(path), "every entry of the train split is missing")
    assert not (tmp_path / "run").exists()
    rc, err = cli(["evaluate", "--run", "nowhere", "--data", path, "--out", tmp_path / "m.json"], capsys)
    one_line_error(rc, err, "nowhere")


def test_huge_observations_refused_up_front_and_leave_nothing(sim, tmp_path, capsys):
    y = sim.y.copy()
    y[7, 1] = 1e30
    path = write_h5(LongitudinalData(y, sim.mask, sim.split, sim.covariates), tmp_path / "huge.h5")
    rc, err = cli(["fit", "--data", path, "--model", model_yaml(tmp_path), "--out", tmp_path / "run"], capsys)
    one_line_error(rc, err, str(path), "row 7, column 1", "rescale")
    assert not (tmp_path / "run").exists()


def test_duplicate_id_time_rows_warn_with_their_count(sim, tmp_path):
    rows = np.r_[np.arange(sim.n_obs), [0, 1, 2]]
    data = sim.subset(rows)
    with pytest.warns(lmmvae.errors.LmmvaeWarning, match=r"3 row\(s\) repeat an earlier row's \(id, time\)"):
        lmmvae.fit(data, progress=False, **SETTINGS)


def test_mcc_on_data_without_rows(sim, finished_run, tmp_path, capsys):
    path = write_h5(sim.subset(np.arange(0)), tmp_path / "none.h5")
    rc, err = cli(["mcc", finished_run, finished_run, "--data", path], capsys)
    one_line_error(rc, err, str(path), "no rows")


# -- tables (CSV) ------------------------------------------------------------------------------


@pytest.mark.parametrize("content,fragment", [
    (b"", "is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is binary"),
    (b"time,sex,id\n", "has a header but no rows"),
    (b"time,sex,id\n0.5,1,s1\nabc,0,s2\n", "column 'time' at row 2 (line 3): 'abc' is not a finite number"),
    (b"time,sex,id\n0.5,1,s1\n0.2,0,\n", "column 'id' is blank at row 2 (line 3)"),
    (b"time,sex,id\n0.5,2,s1\n", "column 'sex' at row 1 (line 2): 2; sex is binary"),
    (b"time,id\n0.5,s1\n", "lacks column(s) sex"),
])
def test_bad_predict_csv_names_file_column_and_row(finished_run, tmp_path, capsys, content, fragment):
    path = tmp_path / "new.csv"
    path.write_bytes(content)
    rc, err = cli(["predict", "--run", finished_run, "--covariates", path, "--out", tmp_path / "p.h5"], capsys)
    one_line_error(rc, err, str(path), fragment)
    assert not (tmp_path / "p.h5").exists()


def test_predict_csv_ids_by_value_and_unseen_subjects_warned(finished_run, tmp_path, capsys):
    path = tmp_path / "new.csv"
    path.write_text("time,sex,id\n0.5,1,s1\n0.2,0,s1\n0.3,0,nobody\n")
    rc, err = cli(["predict", "--run", finished_run, "--covariates", path, "--out", tmp_path / "p.h5"], capsys)
    assert rc == 0, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("lmmvae: warning:")]
    assert len(warnings) == 1 and "1 'id' level(s) (1 row(s)) not seen in training" in warnings[0]
    with h5py.File(tmp_path / "p.h5") as f:
        assert f["y_pred"].shape == (3, 4)


# -- run directories ---------------------------------------------------------------------------


def test_out_naming_a_file_or_a_foreign_directory(data_file, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", afile], capsys)
    one_line_error(rc, err, str(afile), "not a directory")
    assert afile.read_text() == "mine"
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", tmp_path], capsys)
    one_line_error(rc, err, str(tmp_path), "not a run directory", "another --out")


def test_finished_run_is_never_lost(data_file, finished_run, tmp_path, capsys, monkeypatch):
    run = copy_run(finished_run, tmp_path / "run")
    before = (run / "model.pt").read_bytes()
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", run, "--quiet"], capsys)
    one_line_error(rc, err, str(run), "finished run", "--overwrite")
    assert (run / "model.pt").read_bytes() == before

    # --overwrite whose training fails: the old run is intact, no staging directory is left
    from lmmvae.train import Trainer

    def broken(self):
        raise FloatingPointError("non-finite train loss")

    monkeypatch.setattr(Trainer, "fit", broken)
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path, latent_dim=3), "--out", run,
                   "--overwrite", "--quiet"], capsys)
    one_line_error(rc, err, "training diverged")
    assert (run / "model.pt").read_bytes() == before
    assert lmmvae.load(run).config.latent_dim == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()

    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path, latent_dim=3), "--out", run,
                   "--overwrite", "--quiet"], capsys)
    assert rc == 0, err
    assert lmmvae.load(run).config.latent_dim == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_resume_with_other_data_is_an_error(sim, data_file, tmp_path, capsys):
    run = tmp_path / "run"
    lmmvae.fit(data_file, out=run, progress=False, **SETTINGS)
    y = sim.y.copy()
    y[0, 0] += 1.0  # same shape, other values
    other = write_h5(LongitudinalData(y, sim.mask, sim.split, sim.covariates, attrs=sim.attrs), tmp_path / "other.h5")
    rc, err = cli(["fit", "--data", other, "--model", model_yaml(tmp_path), "--out", run, "--resume", "--quiet"],
                  capsys)
    one_line_error(rc, err, str(run), "was trained on", str(data_file), "not on", str(other))
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", run, "--resume", "--quiet"],
                  capsys)
    assert rc == 0, err  # the same data resumes
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", run, "--resume",
                   "--overwrite"], capsys)
    one_line_error(rc, err, "contradict")


@pytest.mark.parametrize("damage,fragment", [
    (lambda run: (run / "config.json").write_text("{not json"), "config.json: damaged"),
    (lambda run: (run / "config.json").write_text("[1, 2]"), "not a run config"),
    (lambda run: (run / "design.json").write_text('{"version": 1}'), "design.json"),
    (lambda run: (run / "model.pt").write_bytes((run / "model.pt").read_bytes()[:100]), "model.pt: unreadable"),
    (lambda run: (run / "model.pt").write_bytes(b""), "model.pt: unreadable"),
    (lambda run: torch.save({"x": torch.zeros(1)}, run / "model.pt"), "does not match its config.json"),
    (lambda run: (run / "model.pt").unlink(), "not a finished run (model.pt missing)"),
])
def test_damaged_run_directory_is_one_line(finished_run, data_file, tmp_path, capsys, damage, fragment):
    run = copy_run(finished_run, tmp_path / "run")
    damage(run)
    rc, err = cli(["evaluate", "--run", run, "--data", data_file, "--out", tmp_path / "m.json"], capsys)
    one_line_error(rc, err, str(run), fragment)
    assert not (tmp_path / "m.json").exists()


def test_model_file_of_another_config_is_refused(data_file, finished_run, tmp_path, capsys):
    other = tmp_path / "other"
    lmmvae.fit(data_file, out=other, progress=False, **{**SETTINGS, "latent_dim": 3})
    run = copy_run(finished_run, tmp_path / "run")
    (run / "model.pt").write_bytes((other / "model.pt").read_bytes())
    with pytest.raises(RunError, match="does not match its config.json"):
        lmmvae.load(run)


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, "truncate"])
def test_damaged_checkpoint_is_discarded_and_training_restarts(data_file, finished_run, tmp_path, capsys, content):
    run = tmp_path / "run"
    run.mkdir()
    good = (finished_run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(good[: len(good) // 2] if content == "truncate" else content)
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", run, "--resume",
                   "--quiet"], capsys)
    assert rc == 0, err
    assert "lmmvae: warning:" in err and "unreadable checkpoint" in err and "Traceback" not in err
    assert (run / "model.pt").exists() and (run / "checkpoint.pt").read_bytes() != b""
    # and the restarted run is the run from scratch: the same weights as a fresh fit
    fresh = lmmvae.fit(data_file, progress=False, **SETTINGS)
    resumed = lmmvae.load(run)
    for a, b in zip(fresh.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_failure_at_the_start_leaves_no_run_directory(data_file, tmp_path, monkeypatch, capsys):
    from lmmvae.train import Trainer

    def diverge(self):
        raise FloatingPointError("non-finite train loss; lower lr or check the data for extreme values")

    monkeypatch.setattr(Trainer, "fit", diverge)
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", tmp_path / "run"], capsys)
    one_line_error(rc, err, str(data_file), "training diverged")
    assert not (tmp_path / "run").exists()


# -- configs and formulas ----------------------------------------------------------------------


@pytest.mark.parametrize("edit,fragment", [
    (lambda c: c["datasets"]["health_mnist"]["options"].update({"x; touch M": 1}), "options: name 'x; touch M'"),
    (lambda c: c["datasets"]["physionet"]["synthetic"].update({"$(id)": 1}), "synthetic: name '$(id)'"),
    (lambda c: c["experiments"]["rotating_mnist_basis"]["figures"]["latent"].update(covariate="a`id`"),
     "covariate: name 'a`id`'"),
    (lambda c: c["experiments"]["health_mnist"]["models"].update({"m$(id)": {"variant": "vae"}}), "models: name"),
    (lambda c: c["experiments"]["rotating_mnist_basis"]["sweep"].update(values=["1;id"]), "'1;id'"),
])
def test_config_names_are_constrained(edit, fragment):
    from lmmvae.reporting.experiments import load_plan

    config = yaml.safe_load(TINY.read_text())
    edit(config)
    with pytest.raises(ConfigError) as err:
        load_plan(config, SCHEMA)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("formula,fragment", [
    ("fourier(t, " + "(" * 5000 + "1" + ")" * 5000 + ", period=1)", "characters; at most"),
    ("fourier(t, " + "(" * 100 + "1" + ")" * 100 + ", period=1)", "nested 101 deep"),
    ("fourier(t, " + "- " * 2999 + "1, period=1)", "must be >= 1"),  # no RecursionError
    ("a*b*c*d*e*f*g*h*i*j*k", "more than 10 factors"),
    ("fourier(t, 1e9, period=1)", "must be <= 10000"),
    ("rff(t, 1e12, 1)", "must be <= 10000"),
    ("poly(t, 1000)", "must be <= 20"),
    ("fourier(t, 1e400, period=1)", "must be an integer"),
])
def test_pathological_formulas_are_one_line(formula, fragment):
    with pytest.raises(DesignError) as err:
        parse_formula(formula)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_too_many_design_columns_is_one_line():
    covs = {"a": Covariate(np.arange(400) % 400, "categorical"), "b": Covariate(np.arange(400) % 300, "categorical")}
    with pytest.raises(DesignError, match="columns; at most"):
        Design("~ C(a):C(b)").fit(covs)


def test_bad_formula_at_fit_is_one_line_and_leaves_nothing(data_file, tmp_path, capsys):
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path, design="poly(time, 99)"),
                   "--out", tmp_path / "run"], capsys)
    one_line_error(rc, err, "poly() argument degree must be <= 20")
    assert not (tmp_path / "run").exists()


def test_binary_grid_csv_for_the_latent_figure(tmp_path, capsys):
    grid = tmp_path / "grid.csv"
    grid.write_bytes(b"\x00\x01\x02binary")
    rc, err = cli(["report", "latent-effects", "--grid", grid, "--latent", tmp_path / "z.h5",
                   "--png", tmp_path / "f.png", "--pdf", tmp_path / "f.pdf"], capsys)
    one_line_error(rc, err, str(grid), "is binary")
    assert not (tmp_path / "f.png").exists()
