# Reporting: every run's metrics -> one tidy results/metrics.csv -> per experiment a table
# (Markdown, LaTeX, and HTML for the report) and its figures (PNG and PDF), marked for `snakemake --report`.
# The `lmmvae report` commands do not import torch.


# the manifest labels each metrics file (base model, display label, sweep value); written by a
# script rather than a shell command, since it grows past the size of one command-line argument
rule manifest:
    output:
        "results/runs.json",
    log:
        "results/logs/manifest.log",
    benchmark:
        "results/benchmarks/manifest.tsv"
    params:
        content=PLAN.manifest(metrics_json, mcc_json),
    conda:
        ENV
    localrule: True
    script:
        "../scripts/write_json.py"


rule aggregate:
    input:
        manifest="results/runs.json",
        metrics=[metrics_json(training) for training in PLAN.trainings],
        mcc=[mcc_json(pair) for pair in PLAN.training_pairs],
    output:
        "results/metrics.csv",
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    conda:
        ENV
    localrule: True
    shell:
        "python -m lmmvae report aggregate --manifest {input.manifest:q} --out {output:q} > {log:q} 2>&1"


# the config's claims (written before the run) decided by the paired rule over seeds
rule claims:
    input:
        "results/metrics.csv",
    output:
        "results/tables/claims.md",
    log:
        "results/logs/claims.log",
    benchmark:
        "results/benchmarks/claims.tsv"
    params:
        spec=claims_spec,
    conda:
        ENV
    localrule: True
    shell:
        "python -m lmmvae report claims --metrics {input:q} --spec {params.spec:q} --md {output:q} > {log:q} 2>&1"


rule table:
    input:
        "results/metrics.csv",
    output:
        md="results/tables/{experiment}.md",
        # the report shows HTML in place (a Markdown file would only be a download)
        html=report(
            "results/tables/{experiment}.html",
            caption="../report/table.rst",
            category=lambda wc: PLAN.experiments[wc.experiment].title,
            labels={"table": "mean ± std over seeds"},
        ),
        tex="results/tables/{experiment}.tex",
    log:
        "results/logs/table/{experiment}.log",
    benchmark:
        "results/benchmarks/table/{experiment}.tsv"
    params:
        spec=lambda wc: report_spec(wc.experiment),
    conda:
        ENV
    localrule: True
    shell:
        "python -m lmmvae report table --metrics {input:q} --spec {params.spec:q}"
        " --md {output.md:q} --tex {output.tex:q} --html {output.html:q} > {log:q} 2>&1"


rule figure_metrics:
    input:
        "results/metrics.csv",
    output:
        png=report(
            "results/figures/{fig}.png",
            caption="../report/figure.rst",
            category=figure_category,
        ),
        pdf="results/figures/{fig}.pdf",
    log:
        "results/logs/figure_metrics/{fig}.log",
    benchmark:
        "results/benchmarks/figure_metrics/{fig}.tsv"
    wildcard_constraints:
        fig=one_of(figures_of("by_model", "sweep")),
    params:
        spec=lambda wc: report_spec(*wc.fig.split("/")),
        caption=figure_caption,
    conda:
        ENV
    localrule: True
    shell:
        "python -m lmmvae report figure --metrics {input:q} --spec {params.spec:q}"
        " --png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"


rule figure_trajectories:
    input:
        data=lambda wc: data_h5(figure_spec(wc.fig)[0].dataset),
        predictions=lambda wc: predictions_h5(PLAN.training(latent_run(wc))),
    output:
        png=report(
            "results/figures/{fig}.png",
            caption="../report/figure.rst",
            category=figure_category,
        ),
        pdf="results/figures/{fig}.pdf",
    log:
        "results/logs/figure_trajectories/{fig}.log",
    benchmark:
        "results/benchmarks/figure_trajectories/{fig}.tsv"
    wildcard_constraints:
        fig=one_of(figures_of("trajectories")),
    params:
        subjects=lambda wc: figure_spec(wc.fig)[1].get("subjects", 2),
        steps=lambda wc: figure_spec(wc.fig)[1].get("steps", 10),
        time=lambda wc: cli_options({"time": figure_spec(wc.fig)[1].get("time")}),
        title=lambda wc: PLAN.model(latent_run(wc).dataset, latent_run(wc).model).label,
        caption=figure_caption,
    conda:
        ENV
    shell:
        "python -m lmmvae report trajectories --data {input.data:q} --predictions {input.predictions:q}"
        " --subjects {params.subjects:q} --steps {params.steps:q} {params.time:q} --title {params.title:q}"
        " --png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"


rule figure_latent_effects:
    input:
        grid="results/latent/{fig}.grid.csv",
        latent="results/latent/{fig}.h5",
    output:
        png=report(
            "results/figures/{fig}.png",
            caption="../report/figure.rst",
            category=figure_category,
        ),
        pdf="results/figures/{fig}.pdf",
    log:
        "results/logs/figure_latent_effects/{fig}.log",
    benchmark:
        "results/benchmarks/figure_latent_effects/{fig}.tsv"
    wildcard_constraints:
        fig=one_of(figures_of("latent_effects")),
    params:
        title=lambda wc: PLAN.model(latent_run(wc).dataset, latent_run(wc).model).label,
        caption=figure_caption,
    conda:
        ENV
    localrule: True
    shell:
        "python -m lmmvae report latent-effects --grid {input.grid:q} --latent {input.latent:q}"
        " --title {params.title:q} --png {output.png:q} --pdf {output.pdf:q} > {log:q} 2>&1"
