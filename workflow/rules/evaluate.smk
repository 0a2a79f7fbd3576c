# Evaluation beyond each run's own metrics (those are written by its training job, `fit` in
# train.smk, together with the predictions a trajectories figure draws): MCC between the latents of
# two seeds (identifiability), and the latent predictions on a covariate grid for the latent figures.


rule mcc_seeds:
    input:
        data=lambda wc: data_h5(wc.dataset),
        model_a="results/train/{dataset}/{training}/seed{seed}/model.pt",
        model_b="results/train/{dataset}/{training}/seed{seed_b}/model.pt",
    output:
        "results/eval/{dataset}/{training}/mcc/seed{seed}_seed{seed_b}.json",
    log:
        "results/logs/mcc_seeds/{dataset}/{training}/seed{seed}_seed{seed_b}.log",
    benchmark:
        "results/benchmarks/mcc_seeds/{dataset}/{training}/seed{seed}_seed{seed_b}.tsv"
    params:
        run_a=lambda wc, input: os.path.dirname(input.model_a),
        run_b=lambda wc, input: os.path.dirname(input.model_b),
    conda:
        ENV
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m lmmvae mcc {params.run_a:q} {params.run_b:q} --data {input.data:q}"
        " --out {output:q} > {log:q} 2>&1"


rule latent_grid:
    input:
        data=lambda wc: data_h5(figure_spec(wc.fig)[0].dataset),
    output:
        "results/latent/{fig}.grid.csv",
    log:
        "results/logs/latent_grid/{fig}.log",
    benchmark:
        "results/benchmarks/latent_grid/{fig}.tsv"
    wildcard_constraints:
        fig=one_of(figures_of("latent_effects")),
    params:
        covariate=lambda wc: figure_spec(wc.fig)[1]["covariate"],
        points=lambda wc: figure_spec(wc.fig)[1].get("points", 64),
        subjects=lambda wc: figure_spec(wc.fig)[1].get("subjects", 5),
    conda:
        ENV
    shell:
        "python -m lmmvae report grid --data {input.data:q} --covariate {params.covariate:q}"
        " --points {params.points:q} --subjects {params.subjects:q} --out {output:q} > {log:q} 2>&1"


rule latent_predict:
    input:
        grid="results/latent/{fig}.grid.csv",
        model=lambda wc: f"{run_dir(PLAN.training(latent_run(wc)))}/model.pt",
    output:
        "results/latent/{fig}.h5",
    log:
        "results/logs/latent_predict/{fig}.log",
    benchmark:
        "results/benchmarks/latent_predict/{fig}.tsv"
    wildcard_constraints:
        fig=one_of(figures_of("latent_effects")),
    params:
        run_dir=lambda wc, input: os.path.dirname(input.model),
    conda:
        ENV
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m lmmvae predict --run {params.run_dir:q} --covariates {input.grid:q} --no-intervals"
        " --out {output:q} > {log:q} 2>&1"
