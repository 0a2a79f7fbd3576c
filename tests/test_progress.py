"""lmmvae.progress: plain lines (no carriage-return frames) in log files, a tqdm bar on a terminal."""

import io

from lmmvae.progress import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_file_gets_plain_lines_at_each_tenth_and_the_postfix():
    log = io.StringIO()
    bar = progress(range(200), desc="vae/elbo", unit="epochs", stream=log)
    for epoch in bar:
        bar.set_postfix(val=f"{-epoch:.4g}", best=epoch + 1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 10
    assert lines[0].startswith("vae/elbo: 20/200 epochs (10 %), ")
    assert lines[0].endswith("val=-19 best=20")  # the values of the epoch just finished
    assert lines[-1].startswith("vae/elbo: 200/200 epochs (100 %)")


def test_early_stop_and_resume_print_the_true_last_epoch():
    log = io.StringIO()
    bar = progress(range(30, 200), initial=30, total=200, desc="fit", unit="epochs", stream=log)
    for epoch in bar:
        if epoch + 1 == 57:  # patience ends training at the end of epoch 57
            break
    lines = log.getvalue().splitlines()
    assert [line.split(" ")[1] for line in lines] == ["40/200", "57/200"]


def test_delay_keeps_quick_loops_silent_and_disabled_prints_nothing():
    log = io.StringIO()
    assert list(progress(range(5), desc="quick", delay=60, stream=log)) == list(range(5))
    assert list(progress(range(5), enabled=False, stream=log)) == list(range(5))
    assert log.getvalue() == ""


def test_terminal_gets_a_tqdm_bar():
    tty = _Terminal()
    assert list(progress(range(3), desc="bar", stream=tty)) == [0, 1, 2]
    assert "\r" in tty.getvalue() and "bar" in tty.getvalue()


def test_fit_writes_plain_epoch_lines_and_ends_with_best_epoch_and_val_loss(tmp_path, capsys):
    """What a Snakemake `log:` file of `lmmvae fit` gets (stderr is not a terminal under pytest)."""
    from lmmvae.cli import main
    from lmmvae.data.h5 import write_h5
    from simulate import simulate_lmm

    data = write_h5(simulate_lmm(n_subjects=12, n_times=5, n_future=1), tmp_path / "sim.h5")
    model = tmp_path / "model.yaml"
    model.write_text('variant: olmm\ndesign: "~ time + (1 | id)"\nlatent_dim: 2\nnetwork: mlp\nepochs: 4\n'
                     "batch_size: 32\n")
    assert main(["fit", "--data", str(data), "--model", str(model), "--out", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert "\r" not in err
    epochs = [line for line in err.splitlines() if line.startswith("olmm/elbo: ")]
    assert [line.split(" ")[1] for line in epochs] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("val=" in line and "best=" in line for line in epochs)
    assert "best epoch" in out and "validation loss" in out and "hit the epoch budget" in out
