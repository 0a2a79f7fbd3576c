"""Hostile inputs, strict reading and faults: ids as text, numbers checked in the dtype used, strict
YAML (duplicate keys, aliases, size), range-checked CLI numbers, a full disk, a stuck GPU claim lock,
and no traceback from any command (an unknown error is one line and a log file)."""

from __future__ import annotations

import errno

from hostile_common import *  # noqa: F401,F403 - shared imports, fixtures (sim, data_file, finished_run), helpers

from lmmvae.runs.yamlio import MAX_ALIASES, read_yaml
from lmmvae.training import gpu_slots


def _table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


def test_ids_are_read_as_text(tmp_path, capsys):
    """``007`` stays ``007`` (pandas alone reads it as 7); written with ``7`` too, it is an error, never one subject."""
    rows = "".join(f"{s},{t},{t + 0.5}\n" for s in ("007", "010") for t in range(3))
    rc, err = cli(["data", "from-table", "--table", _table(tmp_path, "id,time,f\n" + rows), "--subject", "id",
                   "--time", "time", "--features", "f", "--out", tmp_path / "o.h5"], capsys)
    assert rc == 0, err
    assert read_h5(tmp_path / "o.h5").covariates["id"].levels == ["007", "010"]
    rows = "".join(f"{s},{t},{t + 0.5}\n" for s in ("007", "7") for t in range(3))
    rc, err = cli(["data", "from-table", "--table", _table(tmp_path, "id,time,f\n" + rows), "--subject", "id",
                   "--time", "time", "--features", "f", "--out", tmp_path / "p.h5"], capsys)
    one_line_error(rc, err, "'007' and '7'")


def test_duplicate_column_names(tmp_path, capsys, finished_run):
    rc, err = cli(["data", "from-table", "--table", _table(tmp_path, "id,time,f,f\n1,0,1,2\n"), "--subject", "id",
                   "--time", "time", "--out", tmp_path / "o.h5"], capsys)
    one_line_error(rc, err, "'f' is named twice")
    rc, err = cli(["predict", finished_run, "--covariates", _table(tmp_path, "time,sex,id,sex\n0.5,1,s1,0\n"),
                   "--out", tmp_path / "p.csv"], capsys)
    one_line_error(rc, err, "'sex' is named twice")
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "p.csv").exists()


def test_huge_features_standardise_to_their_z_scores(tmp_path, capsys):
    """Features near 1e200: the z-scores of the same values divided by 1e200 (not zeros); without
    standardisation they do not fit the float32 file: one line naming column and row."""
    values = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0]
    rows = "".join(f"{i // 3},{i % 3},{v}e200\n" for i, v in enumerate(values))
    table = _table(tmp_path, "id,time,f\n" + rows)
    rc, err = cli(["data", "from-table", "--table", table, "--subject", "id", "--time", "time", "--features", "f",
                   "--validation-fraction", "0", "--out", tmp_path / "o.h5"], capsys)
    assert rc == 0, err
    y = read_h5(tmp_path / "o.h5").y[:, 0]
    expected = (np.array(values) - np.mean(values)) / np.std(values, ddof=1)
    assert np.allclose(y, expected, atol=1e-6)
    rc, err = cli(["data", "from-table", "--table", table, "--subject", "id", "--time", "time", "--features", "f",
                   "--no-standardise", "--out", tmp_path / "p.h5"], capsys)
    one_line_error(rc, err, "column 'f' at row 1", "float32")


def test_covariate_beyond_float32_in_predict_is_one_line(finished_run, tmp_path, capsys):
    rc, err = cli(["predict", finished_run, "--covariates", _table(tmp_path, "time,sex,id\n1e308,1,s1\n"),
                   "--out", tmp_path / "p.csv"], capsys)
    one_line_error(rc, err, "time", "overflows")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("text,fragment", [
    ("lr: 0.1\nlr: 0.2\n", "'lr' is given twice"),
    ("prior:\n  a: 1\n  a: 2\n", "'a' is given twice"),
    ("lr: .nan\n", "lr: expected a finite number"),
    ("latent_dim: 1000000000\n", "latent_dim must be between 1 and 4096"),
    ("design: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
])
def test_model_yaml_is_strict(data_file, tmp_path, capsys, text, fragment):
    model = tmp_path / "m.yaml"
    model.write_text(text)
    rc, err = cli(["fit", "--data", data_file, "--model", model, "--out", tmp_path / "r"], capsys)
    one_line_error(rc, err, str(model), fragment)
    assert not (tmp_path / "r").exists()


def test_billion_laughs_and_huge_yaml_are_refused_fast(tmp_path):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("\n".join(levels) + "\ndesign: [" + ", ".join(["*i"] * 30) + "]\n")
    with pytest.raises(ConfigError, match=f"more than {MAX_ALIASES} aliases"):
        read_yaml(laughs)
    big = tmp_path / "big.yaml"
    big.write_text("title: " + "x" * (1 << 21) + "\n")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        read_yaml(big)


@pytest.mark.parametrize("argv,fragment", [
    (["predict", "RUN", "--covariates", "c.csv", "--out", "o.csv", "--samples", "0"], "--samples: 0 is out of range"),
    (["predict", "RUN", "--covariates", "c.csv", "--out", "o.csv", "--samples", "1e9"], "--samples: 1e9 is out of range"),
    (["predict", "RUN", "--covariates", "c.csv", "--out", "o.csv", "--samples", "2.5"], "expected an integer"),
    (["predict", "RUN", "--covariates", "c.csv", "--out", "o.csv", "--level", "1"], "--level: 1 is out of range"),
    (["fit", "--data", "d", "--model", "m", "--out", "o", "--epochs", "-5"], "--epochs: -5 is out of range"),
    (["fit", "--data", "d", "--model", "m", "--out", "o", "--seed", str(2**70)], "--seed"),
    (["data", "from-table", "--table", "t.csv", "--subject", "id", "--time", "t", "--out", "o.h5",
      "--test-after", "nan"], "expected a finite number"),
])
def test_cli_numbers_are_range_checked(tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and fragment in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written, `fit --epochs -5` leaves no run behind


def test_full_disk_keeps_the_old_file_and_is_one_line(tmp_path, capsys, monkeypatch):
    table = _table(tmp_path, "id,time,f\n" + "".join(f"{i // 3},{i % 3},{i}\n" for i in range(6)))
    out = tmp_path / "o.h5"
    out.write_bytes(b"the previous good file")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("lmmvae.atomic.os.fsync", full)
    rc, err = cli(["data", "from-table", "--table", table, "--subject", "id", "--time", "time", "--features", "f",
                   "--out", out], capsys)
    one_line_error(rc, err, "no space left")
    assert out.read_bytes() == b"the previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5", "t.csv"]  # no temporary left


def test_an_unknown_error_is_one_line_and_a_log(finished_run, tmp_path, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("lmmvae.answers.summary.summarise", bug)
    rc, err = cli(["summary", finished_run], capsys)
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "internal error (ZeroDivisionError: a bug)" in lines[0], err
    log = Path(re.search(r"traceback in (\S+)", lines[0]).group(1))
    assert "Traceback" in log.read_text() and "ZeroDivisionError" in log.read_text()
    log.unlink()
    with pytest.raises(ZeroDivisionError):
        main(["summary", str(finished_run), "--debug"])


@pytest.mark.parametrize("damage", ["prior.json", "covariates.json", "history.csv", "model.pt"])
def test_damaged_run_files_are_one_line(finished_run, tmp_path, capsys, damage):
    run = copy_run(finished_run, tmp_path / "run")
    (run / damage).write_bytes(b"\x00garbage{")
    rc, err = cli(["summary", run], capsys)
    one_line_error(rc, err, damage)


def test_stuck_claim_lock_times_out_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(tmp_path / 'claim.lock')!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        os.chmod(tmp_path, 0o700)
        logged = []
        with pytest.raises(ConfigError, match=f"held by process {holder.pid}"):
            gpu_slots.try_claim(1, 1, tmp_path, claim_timeout_s=0.6, log=logged.append)
        assert logged and str(holder.pid) in logged[0]
    finally:
        holder.kill()
        holder.wait()
    with gpu_slots.try_claim(1, 1, tmp_path) as slot:  # the holder is gone: no stale state
        assert slot is not None and slot.device == 0


def test_jobs_per_gpu_far_too_large(monkeypatch):
    monkeypatch.setenv(gpu_slots.JOBS_PER_GPU_ENV, "1000000000")
    with pytest.raises(ConfigError, match="up to 1024"):
        gpu_slots.jobs_per_device_from_env()


def test_workflow_config_with_yte_is_refused_before_snakemake(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    config = tmp_path / "c.yaml"
    config.write_text(f"__use_yte__: true\ntitle: ?__import__('pathlib').Path({str(marker)!r}).touch()\n")
    rc, err = cli(["workflow", "check-config", config], capsys)
    one_line_error(rc, err, "__use_yte__", "plain data")
    assert not marker.exists()
    assert cli(["workflow", "check-config", REPO / "config" / "default.yaml"], capsys)[0] == 0
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("\nreproduce:"):].split("\n\n")[0]
    assert recipe.index("workflow check-config") < recipe.index("snakemake")
