"""Hostile inputs, run directories and faults: ``--out`` naming a file or a foreign directory, finished
runs never lost, damaged run files, damaged checkpoints, failures at the start. The kill-and-resume
cases stay in tests/test_cli.py (identical weights) and tests/test_workflow.py (Snakemake)."""

from __future__ import annotations

from hostile_common import *  # noqa: F401,F403 - shared imports, fixtures (sim, data_file, finished_run), helpers


# -- run directories ---------------------------------------------------------------------------


def test_out_naming_a_file_or_a_foreign_directory(data_file, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", afile], capsys)
    one_line_error(rc, err, str(afile), "not a directory")
    assert afile.read_text() == "mine"
    model = model_yaml(tmp_path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    rc, err = cli(["fit", "--data", data_file, "--model", model, "--out", foreign], capsys)
    one_line_error(rc, err, str(foreign), "not a run directory", "another --out")
    rc, err = cli(["fit", "--data", data_file, "--model", model, "--out", tmp_path], capsys)
    one_line_error(rc, err, str(tmp_path), "holds this command's input --model")


def test_finished_run_is_never_lost(data_file, finished_run, tmp_path, capsys, monkeypatch):
    run = copy_run(finished_run, tmp_path / "run")
    before = (run / "model.pt").read_bytes()
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", run, "--quiet"], capsys)
    one_line_error(rc, err, str(run), "finished run", "--overwrite")
    assert (run / "model.pt").read_bytes() == before

    # --overwrite whose training fails: the old run is intact, no staging directory is left
    from lmmvae.training.train import Trainer

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
    from lmmvae.training.train import Trainer

    def diverge(self):
        raise FloatingPointError("non-finite train loss; lower lr or check the data for extreme values")

    monkeypatch.setattr(Trainer, "fit", diverge)
    rc, err = cli(["fit", "--data", data_file, "--model", model_yaml(tmp_path), "--out", tmp_path / "run"], capsys)
    one_line_error(rc, err, str(data_file), "training diverged")
    assert not (tmp_path / "run").exists()
