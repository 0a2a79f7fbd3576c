"""Hostile inputs, paths and locks: no output overwrites an input or a run's own file (coreutils'
``cp a a``), non-regular inputs (FIFO, device) are refused without blocking, and one writer per run
directory (lmmvae.runs.runlock). Each refused case leaves every file byte-identical."""

from __future__ import annotations

from hostile_common import *  # noqa: F401,F403 - shared imports, fixtures (sim, data_file, finished_run), helpers

from lmmvae.runs.runlock import hold


def _snapshot(*paths: Path) -> dict:
    return {p: p.read_bytes() for p in paths}


def _unchanged(before: dict) -> None:
    for path, content in before.items():
        assert path.read_bytes() == content, path


@pytest.mark.parametrize("make_args", [
    lambda run, d, t: ["effects", run, "--covariate", "time", "--png", run / "model.pt"],
    lambda run, d, t: ["effects", run, "--covariate", "time", "--png", t / "x.png", "--csv", t / "x.png"],
    lambda run, d, t: ["summary", run, "--out", run / "config.json"],
    lambda run, d, t: ["summary", run, "--out", run / ".." / run.name / "history.csv"],
    lambda run, d, t: ["evaluate", "--run", run, "--data", d, "--out", d],
    lambda run, d, t: ["evaluate", "--run", run, "--data", d, "--out", t / "m.json", "--predictions", run / "prior.json"],
    lambda run, d, t: ["mcc", run, run, "--data", d, "--out", run / "covariates.json"],
    lambda run, d, t: ["data", "show", d, "--png", d],
    lambda run, d, t: ["fit", "--data", d, "--model", t / "model.yaml", "--out", t / "new", "--evaluate-out", d],
    lambda run, d, t: ["fit", "--data", d, "--model", t / "model.yaml", "--out", t / "new", "--evaluate-out",
                       t / "model.yaml"],
    lambda run, d, t: ["fit", "--data", d, "--model", t / "model.yaml", "--out", t / "new", "--evaluate-out",
                       run / "design.json"],
], ids=["effects-png-model", "effects-png-csv", "summary-config", "summary-dotdot", "evaluate-data",
        "evaluate-predictions-prior", "mcc-covariates", "show-png-data", "fit-evaluate-data", "fit-evaluate-model",
        "fit-evaluate-run-file"])
def test_output_never_overwrites_an_input_or_a_run_file(finished_run, data_file, tmp_path, capsys, make_args):
    run = copy_run(finished_run, tmp_path / "run")
    data = tmp_path / "data.h5"
    data.write_bytes(Path(data_file).read_bytes())
    model_yaml(tmp_path)
    before = _snapshot(data, tmp_path / "model.yaml", *[p for p in run.iterdir()])
    rc, err = cli(make_args(run, data, tmp_path), capsys)
    one_line_error(rc, err)
    _unchanged(before)
    assert not (tmp_path / "new").exists() and not (tmp_path / "x.png").exists()


def test_output_through_a_symlink_to_an_input_is_refused(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    table = tmp_path / "new.csv"
    table.write_text("time,sex,id\n0.5,1,s1\n")
    (tmp_path / "link.csv").symlink_to(table)
    rc, err = cli(["predict", run, "--covariates", table, "--out", tmp_path / "link.csv"], capsys)
    one_line_error(rc, err, "--out", "input --covariates")
    assert table.read_text() == "time,sex,id\n0.5,1,s1\n"


def test_from_table_out_equal_to_its_table(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("id,time,f\n1,0,1.0\n1,1,2.0\n")
    rc, err = cli(["data", "from-table", "--table", table, "--subject", "id", "--time", "time",
                   "--features", "f", "--out", tmp_path / "." / "t.csv"], capsys)
    one_line_error(rc, err, "input --table")
    assert table.read_text() == "id,time,f\n1,0,1.0\n1,1,2.0\n"


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_non_regular_inputs_are_refused_without_blocking(finished_run, tmp_path, capsys, kind):
    if kind == "fifo":
        path = tmp_path / "t.csv"
        os.mkfifo(path)  # nobody writes: reading it would block forever
    elif kind == "device":
        path = Path("/dev/zero")  # a model YAML that never ends
    else:
        path = tmp_path / "d.csv"
        path.mkdir()
    what = {"fifo": "FIFO", "device": "character device", "directory": "directory"}[kind]
    rc, err = cli(["data", "from-table", "--table", path, "--subject", "id", "--time", "t", "--out",
                   tmp_path / "o.h5"], capsys)
    one_line_error(rc, err, "--table", what)
    rc, err = cli(["fit", "--data", path, "--model", path, "--out", tmp_path / "r"], capsys)
    one_line_error(rc, err, "--data", what)
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "r").exists()


def test_a_fifo_as_a_run_file_is_refused(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    (run / "prior.json").unlink()
    os.mkfifo(run / "prior.json")
    rc, err = cli(["summary", run], capsys)
    one_line_error(rc, err, "prior.json", "FIFO")


def test_second_writer_is_refused_naming_the_holder(data_file, finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path / "run")
    before = _snapshot(*[p for p in run.iterdir() if p.is_file()])
    with hold(run):  # this process writes the run; a second fit must not touch it
        rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", run,
                       "--overwrite"], capsys)
        one_line_error(rc, err, str(run), f"process {os.getpid()}", "is writing")
    _unchanged(before)
    assert not list(tmp_path.glob(".run.new-*"))


def test_a_dead_holders_lock_never_blocks(data_file, tmp_path, capsys):
    """The lock file of a killed writer (its pid still written in it) does not block the next fit."""
    out = tmp_path / "run"
    out.mkdir()
    child = subprocess.run([sys.executable, "-c", "import sys; from lmmvae.runs.runlock import hold\n"
                            f"with hold({str(out)!r}): sys.exit(0)"], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    assert (out / ".lmmvae.lock").read_text().strip().isdigit()
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", out], capsys)
    assert rc == 0, err
    assert (out / "model.pt").exists()


def test_two_concurrent_fits_into_one_out(data_file, tmp_path):
    """Two `lmmvae fit` processes into one --out at once: one finishes, the other fails in one line;
    the run is whole (config, weights and history of one fit)."""
    model = model_yaml(tmp_path, epochs=30, patience=0)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lmmvae", "fit", "--data", str(data_file), "--model", str(model), "--out",
           str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], stderr=subprocess.PIPE, text=True, env=env) for s in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(err for rc, err in results if rc == 2)
    assert "is writing this run directory" in loser and "Traceback" not in loser
    winner_seed = 1 if results[0][0] == 0 else 2
    saved = json.loads((out / "config.json").read_text())
    assert saved["info"]["seed"] == winner_seed
    assert lmmvae.load(out).info["seed"] == winner_seed
