"""docs/adding_a_model.md runs as written: its module registers a new variant with
one line, and the usage block fits, saves, loads (from the run's JSON files + weights) and predicts."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmmvae.model import variants

ROOT = Path(__file__).resolve().parents[1]


def section_blocks() -> list[str]:
    section = (ROOT / "docs" / "adding_a_model.md").read_text()
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_example_adds_a_variant_with_one_module_and_one_line(tmp_path, monkeypatch):
    module, usage = section_blocks()
    registrations = [line for line in module.splitlines() if line.startswith("register(")]
    assert len(registrations) == 1  # one registration line
    variants.names()  # the library's variants registered, then the registry as it was, afterwards
    monkeypatch.setattr(variants._REGISTRY, "_entries", dict(variants._REGISTRY._entries))
    monkeypatch.delitem(sys.modules, "my_prior", raising=False)
    (tmp_path / "my_prior.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code = usage.replace('"examples/', f'"{ROOT}/examples/')
    namespace: dict = {}
    exec(compile(code, "docs/adding_a_model.md", "exec"), namespace)
    sys.modules.pop("my_prior", None)

    model, again = namespace["model"], namespace["again"]
    assert model.config.variant == "subject_mean"
    run = tmp_path / "runs" / "subject-mean"
    assert json.loads((run / "prior.json").read_text()) == {"n_subjects": 30}  # examples/visits.csv: 30 patients
    # the loaded model predicts exactly as the fitted one; known patients get their own mean
    new = pd.read_csv(ROOT / "examples" / "new_visits.csv")
    fitted, loaded = model.predict_arrays(new), again.predict_arrays(new)
    np.testing.assert_array_equal(loaded["y_pred"], fitted["y_pred"])
    means = model.model.prior.means.detach()
    assert means.abs().sum() > 0 and not torch.allclose(means[0], means[1])  # learned, per subject
    unseen = (new["patient"] == "P99").to_numpy()
    np.testing.assert_array_equal(fitted["z_mean"][unseen], 0.0)  # unseen patient: the population mean
    assert np.abs(fitted["z_mean"][~unseen]).sum() > 0
