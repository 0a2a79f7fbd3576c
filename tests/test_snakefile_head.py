"""A bare `snakemake` (no --configfile) stops at once with a one-line hint."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def test_bare_snakemake_fails_with_a_one_line_hint(tmp_path):
    result = subprocess.run([SNAKEMAKE, "--dry-run", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                             "--directory", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Using workflow")]
    assert lines == ["no config given: run `snakemake --cores 2 --configfile config/default.yaml` "
                     "(laptop; config/paper.yaml: the paper's scale) from the repository root"], result.stderr
    assert not list(tmp_path.iterdir()) or all(p.name == ".snakemake" for p in tmp_path.iterdir())
