"""Torch threads by model (lmmvae.training.runtime.set_threads): asked > OMP_NUM_THREADS > by network."""

from __future__ import annotations

import pytest
import torch

from lmmvae.cli import main
from lmmvae.errors import ConfigError
from lmmvae.model.networks import is_image_network
from lmmvae.training.runtime import DENSE_THREADS, IMAGE_THREADS, default_threads, set_threads


@pytest.fixture(autouse=True)
def keep_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_default_by_network(monkeypatch):
    assert is_image_network("health_mnist") and is_image_network("rotating_mnist")
    assert not is_image_network("trial") and not is_image_network("mlp") and not is_image_network("nope")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert default_threads(image=False) == DENSE_THREADS == 1
    assert default_threads(image=True) == IMAGE_THREADS == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})  # never more than the CPUs we may use
    assert default_threads(image=True) == 1


def test_asked_then_environment_then_default(monkeypatch):
    assert set_threads(3, image=False) == 3 and torch.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_threads(None, image=False) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert set_threads(None, image=False) == 1
    for bad in (0, -1, 2.5, True, 10_000):
        with pytest.raises(ConfigError, match="threads must be an integer"):
            set_threads(bad, image=False)


def test_cli_threads_option(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--data", "x.h5", "--model", "m.yaml", "--out", str(tmp_path / "r"), "--threads", "0"])
    assert "--threads" in capsys.readouterr().err
