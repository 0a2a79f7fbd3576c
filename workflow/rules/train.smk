# Training: one job per dataset x training x seed, where a training is a model YAML named by its
# content (<variant>-<hash>, lmmvae.reporting.experiments): models with identical settings (a basis
# sweep's n_basis=4 and the main experiment's 4-frequency model) train once and share the results.
# Editing one model gives it a new name, so only its YAML, training and what reads them rerun; the
# models that shared its old training keep it, and never the data or the other models rerun.


rule model_yaml:
    output:
        "results/models/{dataset}/{training}.yaml",
    log:
        "results/logs/model_yaml/{dataset}/{training}.log",
    benchmark:
        "results/benchmarks/model_yaml/{dataset}/{training}.tsv"
    params:
        yaml=lambda wc: PLAN.training_yaml(wc.dataset, wc.training),
    conda:
        ENV
    localrule: True
    shell:
        "printf '%s' {params.yaml:q} > {output:q} 2> {log:q}"


# One job trains a run and evaluates it in the same process (`lmmvae fit --evaluate-out`): one
# interpreter, one torch import, no reload of the model. `lmmvae fit` writes checkpoint.pt
# every epoch (undeclared, so Snakemake never deletes it) and model.pt last and atomically: a job
# killed part-way leaves no model.pt, and the rerun resumes from the checkpoint (--resume starts
# fresh when there is none). A checkpoint of another config, seed or data file (the rerun after an
# edit) is started afresh (--restart-stale; lmmvae compares the run's config.json and data SHA-256).
rule fit:
    input:
        data=lambda wc: data_h5(wc.dataset),
        model="results/models/{dataset}/{training}.yaml",
    output:
        model="results/train/{dataset}/{training}/seed{seed}/model.pt",
        metrics="results/eval/{dataset}/{training}/seed{seed}/metrics.json",
    log:
        "results/logs/fit/{dataset}/{training}/seed{seed}.log",
    benchmark:
        "results/benchmarks/fit/{dataset}/{training}/seed{seed}.tsv"
    params:
        run_dir=lambda wc, output: os.path.dirname(output.model),
        device=DEVICE,
        predictions=[],
    conda:
        ENV
    threads: 1
    resources:
        **TRAIN_RESOURCES,
    shell:
        "OMP_NUM_THREADS={threads} python -m lmmvae fit --data {input.data:q} --model {input.model:q}"
        " --seed {wildcards.seed:q} --out {params.run_dir:q} --device {params.device:q} --resume --restart-stale"
        " --evaluate-out {output.metrics:q} {params.predictions:q} > {log:q} 2>&1"


# the trainings whose predictions a trajectories figure draws: trained by `fit_predictions`, the same
# job also writing the predictions of every row (constrained to these trainings: no other writes them)
PREDICTION_RUNS = [PLAN.training(Run(exp.dataset, fig["model"], fig["seed"]))
                   for exp, fig in map(figure_spec, figures_of("trajectories"))]


use rule fit as fit_predictions with:
    output:
        model="results/train/{dataset}/{training}/seed{seed}/model.pt",
        metrics="results/eval/{dataset}/{training}/seed{seed}/metrics.json",
        predictions="results/predictions/{dataset}/{training}/seed{seed}/predictions.h5",
    params:
        run_dir=lambda wc, output: os.path.dirname(output.model),
        device=DEVICE,
        predictions=lambda wc, output: ["--predictions-out", output.predictions],
    wildcard_constraints:
        dataset=one_of({r.dataset for r in PREDICTION_RUNS}),
        training=one_of({r.name for r in PREDICTION_RUNS}),
        seed=one_of({str(r.seed) for r in PREDICTION_RUNS}),


ruleorder: fit_predictions > fit
