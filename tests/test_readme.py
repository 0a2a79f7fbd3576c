"""The README's quick starts run as printed.

Every ```bash and ```python block under a "## Quick start" heading is executed, unedited and in
README order, in a copy of the repository's tracked files (what a fresh clone has) whose `.venv` is
this checkout's environment, as a user would paste them after `make setup`. Bash blocks run with
`bash -e`; Python blocks with the environment's Python, from the repository root.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV = REPO / ".venv"


def quick_start_blocks(text: str) -> list[tuple[str, str, str]]:
    """``(section, language, code)`` of every bash/python block under a "## Quick start" heading."""
    blocks = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        if not title.startswith("Quick start"):
            continue
        for language, code in re.findall(r"^```(bash|python)\n(.*?)^```", section, flags=re.S | re.M):
            blocks.append((title, language, code))
    return blocks


def test_the_quick_starts_are_found():
    blocks = quick_start_blocks(README.read_text())
    titles = {title for title, _, _ in blocks}
    assert {"Quick start: your own table (command line)", "Quick start: Python",
            "Quick start: images (Health MNIST)"} <= titles
    assert all(code.strip() for _, _, code in blocks)
    # nothing a user would not have: no files outside the repository, no design documents they never see
    text = README.read_text()
    assert "shared/" not in text and not re.search(r"SPEC ?\d|SPEC\.md|DATA\.md|BASELINES\.md", text)
    for link in re.findall(r"\]\(((?:docs|examples)/[^)#]+)", text):
        assert (REPO / link).exists(), link


def fresh_clone(dest: Path) -> Path:
    """The tracked files of this working tree (a fresh clone's files), plus a link to `.venv`."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO / name
        if not source.is_file() or source.is_symlink():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    (dest / ".venv").symlink_to(VENV)
    return dest


@pytest.mark.slow
@pytest.mark.skipif(not (VENV / "bin" / "activate").exists(), reason="needs the project's .venv (make setup)")
def test_quick_starts_run_as_printed(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(VENV)))
    env["OMP_NUM_THREADS"] = "1"
    for title, language, code in quick_start_blocks((clone / "README.md").read_text()):
        command = ["bash", "-e", "-o", "pipefail", "-c", code] if language == "bash" else [
            str(clone / ".venv" / "bin" / "python"), "-c", code]
        result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{title} ({language}) failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        if title.startswith("Quick start: your own table"):
            assert "mse_test=" in result.stdout
    for path in ["data/visits.h5", "runs/visits/model.pt", "runs/visits/metrics.json", "runs/visits-mixedlm",
                 "predictions.csv", "runs/visits-py/model.pt", "data/hm.h5", "runs/hm-olmm/metrics.json",
                 "runs/hm-olmm-seed1/model.pt"]:
        assert (clone / path).exists(), path
    lines = (clone / "predictions.csv").read_text().splitlines()
    assert len(lines) == 1 + 8 and lines[0].startswith("patient,month,sex,arm,age,crp_mean,crp_lower,crp_upper,hb_mean")
