# Report: metric-per-round plots, loss curves, per-round diagnostics, the audit of the negatives,
# and the config used; the same files are the content of `snakemake --report report.html`.


rule report:
    input:
        metrics=f"{RES}/metrics.tsv",
        logs=training_logs,
        mining=mining_stats,
        audits=audits,
    output:
        metrics_png=report(
            f"{RES}/report/metrics.png",
            caption="../workflow/report/metrics.rst",
            category="Metrics",
        ),
        loss_png=report(
            f"{RES}/report/loss.png",
            caption="../workflow/report/loss.rst",
            category="Training",
        ),
        rounds=report(
            f"{RES}/report/rounds.tsv",
            caption="../workflow/report/rounds.rst",
            category="Rounds",
        ),
        metrics_table=report(
            f"{RES}/report/metrics.tsv",
            caption="../workflow/report/metrics_table.rst",
            category="Metrics",
        ),
        audit_png=report(
            f"{RES}/report/audit.png",
            caption="../workflow/report/audit.rst",
            category="Rounds",
        ),
        audit=report(
            f"{RES}/report/audit.tsv",
            caption="../workflow/report/audit_table.rst",
            category="Rounds",
        ),
        config=report(
            f"{RES}/report/config.yaml",
            caption="../workflow/report/config.rst",
            category="Configuration",
        ),
    params:
        config=config,
    log:
        f"{RES}/logs/report.log",
    benchmark:
        f"{RES}/benchmarks/report.tsv"
    conda:
        "../envs/evaluate.yaml"
    script:
        "../workflow/scripts/report.py"
