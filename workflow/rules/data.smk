# Data: one longitudinal HDF5 per dataset (shared/DATA.md). PhysioNet and the clinical trial are
# preprocessed from a raw directory: the configured real one, or else a synthetic cohort written in
# the same raw format by `lmmvae data <generator>-synthetic`.


def raw_dir(wildcards):
    spec = PLAN.datasets[wildcards.dataset]
    return spec.raw if spec.raw is not None else f"results/raw/{wildcards.dataset}"


def data_inputs(wildcards):
    return {"raw": raw_dir(wildcards)} if PLAN.datasets[wildcards.dataset].needs_raw else {}


def data_command(wildcards, input):
    spec = PLAN.datasets[wildcards.dataset]
    raw = f" --raw {shlex.quote(input.raw)}" if spec.needs_raw else ""
    return f"{spec.generator}{raw} {cli_options(spec.options)}"


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
    shell:
        "lmmvae data {params.command} --out {output} > {log} 2>&1"


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
    shell:
        "lmmvae data {params.generator}-synthetic {params.options} --out-dir {output} > {log} 2>&1"
