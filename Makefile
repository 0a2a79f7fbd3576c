# Two commands for a fresh machine: `make test` and `make reproduce` (README).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2

.PHONY: setup test test-slurm reproduce bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# the import contracts of pyproject.toml ([tool.importlinter]) first: every import points down
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# a throw-away single-node SLURM cluster on this machine (root; installs slurm-wlm and munge with
# apt-get if missing), the tiny .test config through profiles/slurm, then the cluster is stopped;
# `workflow/scripts/local_slurm.sh --preflight` says whether this machine can host it (CI asks it)
test-slurm: $(STAMP)
	LMMVAE_TEST_SLURM=1 workflow/scripts/local_slurm.sh $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_slurm.py

# the config is checked first: Snakemake would evaluate a YTE config (`__use_yte__`) as it loads it
reproduce: $(STAMP)
	$(BIN)/lmmvae workflow check-config config/default.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/default.yaml

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .snakemake results
