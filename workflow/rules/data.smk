# Data: one longitudinal HDF5 per dataset (docs/data_format.md). PhysioNet and the clinical trial are
# preprocessed from a raw directory: the configured real one, or else a synthetic cohort written in
# the same raw format by `lmmvae data <generator>-synthetic`.


rule data:
    input:
        unpack(data_inputs),
    output:
        "results/data/{dataset}.h5",
    log:
        "results/logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/data/{dataset}.tsv"
    params:
        # the whole spec, so that editing a dataset's options rebuilds it
        spec=lambda wc: repr(PLAN.datasets[wc.dataset]),
        command=data_command,
    conda:
        ENV
    shell:
        "python -m lmmvae data {params.command:q} --out {output:q} > {log:q} 2>&1"


rule synthetic_raw:
    output:
        directory("results/raw/{dataset}"),
    log:
        "results/logs/synthetic_raw/{dataset}.log",
    benchmark:
        "results/benchmarks/synthetic_raw/{dataset}.tsv"
    params:
        generator=lambda wc: PLAN.datasets[wc.dataset].generator,
        options=lambda wc: cli_options(PLAN.datasets[wc.dataset].synthetic),
    conda:
        ENV
    shell:
        "python -m lmmvae data {params.generator:q}-synthetic {params.options:q} --out-dir {output:q} > {log:q} 2>&1"
