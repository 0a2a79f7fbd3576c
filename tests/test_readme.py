"""The README's Python quick start runs as written (on a small generated Health MNIST file)."""

import re
from pathlib import Path

import pytest


README = Path(__file__).resolve().parents[1] / "README.md"


def python_quick_start() -> str:
    text = README.read_text()
    section = text.split("## Quick start: Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_python_quick_start_runs(tmp_path, monkeypatch):
    from lmmvae.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["data", "health-mnist", "--instances", "8", "--timepoints", "8", "--out", "data/health_mnist.h5"]) == 0
    code = python_quick_start().replace("epochs=20", "epochs=1")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "hm-olmm" / "model.pt").exists()
    assert namespace["future"]["y_pred"].shape[1] == 36 * 36
