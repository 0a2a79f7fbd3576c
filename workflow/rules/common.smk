# Shared by every stage: the validated plan (lmmvae.reporting.experiments), paths, CLI helpers.
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from lmmvae.classical.family import is_classical
from lmmvae.errors import ConfigError
from lmmvae.reporting.experiments import load_plan
from lmmvae.reporting.plan import Run, SeedPair

# Rules run `python -m lmmvae ...`. Without --sdm conda, `python` is the one that runs Snakemake
# (.venv/bin, also when .venv is not activated); with --sdm conda, the job's environment
# (envs/lmmvae.yaml) comes first on PATH and imports this checkout's lmmvae through PYTHONPATH.
def prepend_to_search_path(variable, entry):
    rest = [p for p in os.getenv(variable, "").split(os.pathsep) if p]
    os.environ.update({variable: os.pathsep.join([str(entry), *rest])})


prepend_to_search_path("PATH", Path(sys.executable).parent)
prepend_to_search_path("PYTHONPATH", Path(workflow.basedir).parent)
ENV = "../envs/lmmvae.yaml"

try:
    PLAN = load_plan(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as err:
    raise WorkflowError(f"invalid config {' '.join(map(str, workflow.configfiles))}: {err}")

DEVICE = PLAN.device
# Training requests the GPU resource only on `device: cuda` or `cuda:any` (SLURM: --gpus=1; locally
# `gpu` counts trainings sharing the GPUs: the default profile allows 1, profiles/gpu 8,
# --resources gpu=K; profiles/slurm-packed sets gpu=0 and packs 4 fits per --gres=gpu:1 group job).
# `cuda:any`: each training takes a free slot on the least-loaded visible GPU (lmmvae.training.gpu_slots).
# Classical rows (mixedlm, mean: statsmodels / numpy) ask for no GPU.
def _gpu_of(wildcards):
    variant = wildcards.training.split("-", 1)[0]  # a training is named <variant>-<hash>
    return 0 if is_classical(variant) else 1


TRAIN_RESOURCES = {"gpu": _gpu_of} if DEVICE in ("cuda", "cuda:any") else {}


wildcard_constraints:
    dataset=r"[A-Za-z][A-Za-z0-9_]*",
    training=r"[A-Za-z0-9_]+-[0-9a-f]{10}",
    seed=r"\d+",
    seed_b=r"\d+",
    experiment=r"[A-Za-z][A-Za-z0-9_]*",


def one_of(names):
    """A wildcard constraint matching exactly these strings (never matches when empty)."""
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!)"


def cli_options(options):
    """{test_fraction: 0.2, mnist: null, flag: true} -> ["--test-fraction=0.2", "--flag"].

    A list of whole arguments, for `{params.x:q}` (every interpolation in the rules is quoted:
    config text never reaches the shell as code; the schema also constrains the keys).
    """
    args = []
    for key, value in options.items():
        flag = f"--{str(key).replace('_', '-')}"
        if value is None or value is False:
            continue
        args.append(flag if value is True else f"{flag}={value}")
    return args


# ---- paths: results/<stage>/<dataset>/<training>/seed<seed>/... ----
# A training is named by its model YAML's content, <variant>-<hash> (lmmvae.reporting.experiments):
# models whose settings are identical train once, and results/runs.json says which model is which.
def data_h5(dataset):
    return f"results/data/{dataset}.h5"


def run_dir(training):
    return f"results/train/{training.dataset}/{training.name}/seed{training.seed}"


def metrics_json(training):
    return f"results/eval/{training.dataset}/{training.name}/seed{training.seed}/metrics.json"


def mcc_json(pair):
    return (
        f"results/eval/{pair.dataset}/{pair.name}/mcc/"
        f"seed{pair.seed_a}_seed{pair.seed_b}.json"
    )


def predictions_h5(training):
    return f"results/predictions/{training.dataset}/{training.name}/seed{training.seed}/predictions.h5"


def figures_of(*kinds):
    """ids `experiment/figure` of the figures of these kinds."""
    return [
        f"{exp.name}/{name}"
        for exp in PLAN.experiments.values()
        for name, fig in exp.figures.items()
        if fig["kind"] in kinds
    ]


def figure_spec(fig_id):
    experiment, name = Path(fig_id).parts
    return PLAN.experiments[experiment], PLAN.experiments[experiment].figures[name]


def all_tables():
    return [f"results/tables/{e}.{ext}" for e in PLAN.experiments for ext in ("md", "tex")]


def all_claims():
    return ["results/tables/claims.md"] if config.get("claims") else []


def runnable_claims(claims, experiments):
    """The comparisons this config can decide; a claim keeps the count of those it cannot
    (`missing`: the claim is then at best undecided), and one with none left is listed apart."""
    runnable, left_out = {}, []
    for name, claim in claims.items():
        kept = [c for c in claim.get("compare", []) if c.get("experiment") in experiments]
        missing = len(claim.get("compare", [])) - len(kept)
        if kept:
            runnable[name] = {**claim, "compare": kept, **({"missing": missing} if missing else {})}
        else:
            left_out.append(name)
    return runnable, left_out


def claims_spec(wildcards=None):
    """The config's claims and each experiment's dataset, for `lmmvae report claims`. A claim that
    compares an experiment this config does not run (a trimmed copy of a config) is left out, and
    the table says so."""
    experiments = {name: {"dataset": exp.dataset} for name, exp in PLAN.experiments.items()}
    runnable, left_out = runnable_claims(config.get("claims") or {}, experiments)
    return json.dumps({"claims": runnable, "experiments": experiments, "left_out": left_out})


def all_figures():
    ids = figures_of("by_model", "sweep", "trajectories", "latent_effects")
    return [f"results/figures/{f}.{ext}" for f in ids for ext in ("png", "pdf")]


def raw_dir(wildcards):
    spec = PLAN.datasets[wildcards.dataset]
    return spec.raw if spec.raw is not None else f"results/raw/{wildcards.dataset}"


def data_inputs(wildcards):
    return {"raw": raw_dir(wildcards)} if PLAN.datasets[wildcards.dataset].needs_raw else {}


def data_command(wildcards, input):
    """The arguments of `lmmvae data` (a list, quoted one by one by `{params.command:q}`)."""
    spec = PLAN.datasets[wildcards.dataset]
    raw = ["--raw", str(input.raw)] if spec.needs_raw else []
    return [spec.generator, *raw, *cli_options(spec.options)]


def latent_run(wildcards):
    """The (model, seed) a trajectories or latent figure draws; its results: PLAN.training(run)."""
    exp, fig = figure_spec(wildcards.fig)
    return Run(exp.dataset, fig["model"], fig["seed"])


def report_spec(experiment, figure=None):
    """What a table or metrics figure shows: its models (in order), metrics and sweep."""
    exp = PLAN.experiments[experiment]
    spec = {
        "title": exp.title,
        "dataset": exp.dataset,
        "models": exp.all_models,
        "metrics": exp.metrics,
        "sweep_parameter": exp.sweep_parameter,
    }
    if figure is not None:
        fig = exp.figures[figure]
        spec["metrics"] = {m: exp.metrics.get(m, m) for m in fig["metrics"]}
        spec["kind"] = fig["kind"]
    return json.dumps(spec)


def figure_category(wildcards):
    return figure_spec(wildcards.fig)[0].title


def figure_caption(wildcards):
    exp, fig = figure_spec(wildcards.fig)
    return fig.get("caption", f"{exp.title}: {Path(wildcards.fig).name.replace('_', ' ')}.")
