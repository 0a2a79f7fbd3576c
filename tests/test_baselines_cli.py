"""Smoke test, end to end through the command line: every baseline trains with `lmmvae fit` on small
generated Health MNIST and Rotating MNIST files (read with the experiment's formula as a kernel)
and reports MSE through `lmmvae evaluate`."""

import json
import math

import pytest
import yaml

from lmmvae.cli import main

DESIGNS = {
    "health_mnist": {
        "vae": "~ 1",
        "cvae": "~ age + sex + diseasePresence:diseaseAge",
        "gppvae": "~ age + (1 | id)",
        "svgpvae": "~ age + (1 | id)",
        "lvae": "~ age + sex:age + diseasePresence:diseaseAge + (1 | id)",
    },
    "rotating_mnist": {
        "vae": "~ 1",
        "cvae": "~ fourier(angle, 4, period=2*pi)",
        "gppvae": "~ fourier(angle, 1, period=2*pi) + (1 | id)",
        "svgpvae": "~ fourier(angle, 1, period=2*pi) + (1 | id)",
        "lvae": "~ fourier(angle, 1, period=2*pi) + (1 | id)",
    },
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    health, rotating = root / "health.h5", root / "rotating.h5"
    assert main(["data", "health-mnist", "--instances", "6", "--timepoints", "6", "--train-timepoints", "3",
                 "--seed", "1", "--quiet", "--out", str(health)]) == 0
    assert main(["data", "rotating-mnist", "--instances", "5", "--timepoints", "8", "--test-window", "2",
                 "--test-fraction", "0.4", "--seed", "1", "--quiet", "--out", str(rotating)]) == 0
    return {"health_mnist": health, "rotating_mnist": rotating}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(DESIGNS))
@pytest.mark.parametrize("variant", ["vae", "cvae", "gppvae", "svgpvae", "lvae"])
def test_smoke_baseline_fits_and_evaluates_through_the_cli(variant, dataset, files, tmp_path):
    model = {"variant": variant, "design": DESIGNS[dataset][variant], "latent_dim": 4, "network": dataset,
             "network_options": {"channels": [4, 8], "hidden": 16}, "epochs": 2, "batch_size": 16, "lr": 1e-3}
    if variant in ("svgpvae", "lvae"):
        model["prior"] = {"n_inducing": 8}
    if variant in ("gppvae", "svgpvae"):
        model["prior"] = {**model.get("prior", {}), "object_dim": 2}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(model))
    run = tmp_path / "run"
    assert main(["fit", "--data", str(files[dataset]), "--model", str(tmp_path / "model.yaml"), "--seed", "0",
                 "--out", str(run), "--quiet"]) == 0
    assert (run / "model.pt").exists()
    assert main(["evaluate", "--run", str(run), "--data", str(files[dataset]), "--out", str(tmp_path / "m.json"),
                 "--predictions", str(tmp_path / "p.h5")]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["variant"] == variant
    metrics = report["metrics"]
    expected = {"mse_test", "nll_test", "mcc_truth"} | ({"mse_impute"} if dataset == "health_mnist" else set())
    assert expected <= set(metrics), metrics
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert 0 < metrics["mse_test"] < 1  # images in [0, 1]


@pytest.mark.slow
def test_readme_baselines_yaml_trains(files, tmp_path):
    """The L-VAE example of docs/configuration.md is a valid model YAML that trains on Health MNIST."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text().split("## Baselines", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    model = yaml.safe_load(block)
    model.update(epochs=1, network_options={"channels": [4, 8], "hidden": 16})
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(model))
    assert main(["fit", "--data", str(files["health_mnist"]), "--model", str(tmp_path / "model.yaml"),
                 "--out", str(tmp_path / "run"), "--quiet"]) == 0
