# Training: one job per dataset x model x seed. Each model's settings go to their own YAML through
# `params`, so that editing one model in the config reruns that model's jobs only (Snakemake's
# params rerun trigger), and never the data or the other models.


rule model_yaml:
    output:
        "results/models/{dataset}/{model}.yaml",
    log:
        "results/logs/model_yaml/{dataset}/{model}.log",
    benchmark:
        "results/benchmarks/model_yaml/{dataset}/{model}.tsv"
    params:
        yaml=lambda wc: PLAN.model(wc.dataset, wc.model).yaml(),
    conda:
        ENV
    localrule: True
    shell:
        "printf '%s' {params.yaml:q} > {output:q} 2> {log:q}"


# `lmmvae fit` writes checkpoint.pt every epoch (undeclared, so Snakemake never deletes it) and
# model.pt last and atomically: a job killed part-way leaves no model.pt, and the rerun resumes from
# the checkpoint (--resume starts fresh when there is none). A checkpoint older than the data or
# the model YAML belongs to settings that have since changed: the run directory is cleared first.
rule fit:
    input:
        data=lambda wc: data_h5(wc.dataset),
        model="results/models/{dataset}/{model}.yaml",
    output:
        "results/train/{dataset}/{model}/seed{seed}/model.pt",
    log:
        "results/logs/fit/{dataset}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/fit/{dataset}/{model}/seed{seed}.tsv"
    params:
        run_dir=lambda wc, output: os.path.dirname(output[0]),
        device=DEVICE,
    conda:
        ENV
    threads: 1
    resources:
        **TRAIN_RESOURCES,
    shell:
        "ckpt={params.run_dir:q}/checkpoint.pt; : > {log:q};"
        ' if [ -e "$ckpt" ] && {{ [ {input.model:q} -nt "$ckpt" ] || [ {input.data:q} -nt "$ckpt" ]; }};'
        " then echo 'stale checkpoint (settings or data changed): starting afresh' >> {log:q};"
        " rm -rf {params.run_dir:q}; fi;"
        " OMP_NUM_THREADS={threads} python -m lmmvae fit --data {input.data:q} --model {input.model:q}"
        " --seed {wildcards.seed:q} --out {params.run_dir:q} --device {params.device:q} --resume"
        " >> {log:q} 2>&1"
