# Evaluation: metrics of each run (MSE, NLL, MCC against latent_truth), MCC between the latents of
# two seeds (identifiability), and the predictions that the trajectory and latent figures draw.


rule evaluate:
    input:
        data=lambda wc: data_h5(wc.dataset),
        model="results/train/{dataset}/{model}/seed{seed}/model.pt",
    output:
        "results/eval/{dataset}/{model}/seed{seed}/metrics.json",
    log:
        "results/logs/evaluate/{dataset}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{model}/seed{seed}.tsv"
    params:
        run_dir=lambda wc, input: os.path.dirname(input.model),
    conda:
        ENV
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m lmmvae evaluate --run {params.run_dir:q} --data {input.data:q}"
        " --out {output:q} > {log:q} 2>&1"


rule mcc_seeds:
    input:
        data=lambda wc: data_h5(wc.dataset),
        model_a="results/train/{dataset}/{model}/seed{seed}/model.pt",
        model_b="results/train/{dataset}/{model}/seed{seed_b}/model.pt",
    output:
        "results/eval/{dataset}/{model}/mcc/seed{seed}_seed{seed_b}.json",
    log:
        "results/logs/mcc_seeds/{dataset}/{model}/seed{seed}_seed{seed_b}.log",
    benchmark:
        "results/benchmarks/mcc_seeds/{dataset}/{model}/seed{seed}_seed{seed_b}.tsv"
    params:
        run_a=lambda wc, input: os.path.dirname(input.model_a),
        run_b=lambda wc, input: os.path.dirname(input.model_b),
    conda:
        ENV
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m lmmvae mcc {params.run_a:q} {params.run_b:q} --data {input.data:q}"
        " --out {output:q} > {log:q} 2>&1"


rule predictions:
    input:
        data=lambda wc: data_h5(wc.dataset),
        model="results/train/{dataset}/{model}/seed{seed}/model.pt",
    output:
        predictions="results/predictions/{dataset}/{model}/seed{seed}/predictions.h5",
        metrics="results/predictions/{dataset}/{model}/seed{seed}/metrics.json",
    log:
        "results/logs/predictions/{dataset}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/predictions/{dataset}/{model}/seed{seed}.tsv"
    params:
        run_dir=lambda wc, input: os.path.dirname(input.model),
    conda:
        ENV
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m lmmvae evaluate --run {params.run_dir:q} --data {input.data:q}"
        " --out {output.metrics:q} --predictions {output.predictions:q} > {log:q} 2>&1"


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
        model=lambda wc: f"{run_dir(latent_run(wc))}/model.pt",
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
        "OMP_NUM_THREADS={threads} python -m lmmvae predict --run {params.run_dir:q} --covariates {input.grid:q}"
        " --out {output:q} > {log:q} 2>&1"
