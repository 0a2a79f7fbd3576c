"""Shared pieces of the hostile-input tests (tests/test_hostile_*.py): tiny data, a 1-epoch run,
and the CLI helpers that assert a one-line error."""

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
from lmmvae.data.h5 import Covariate, LongitudinalData, level_key, match_levels, read_h5, write_h5
from lmmvae.data.loader import recode
from lmmvae.errors import ConfigError, DataFormatError, DesignError, RunError
from lmmvae.model.design import Design, parse_formula
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


