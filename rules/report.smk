# Report: metric-per-round plots, loss curves, per-round diagnostics, the audit of the negatives,
# compute per round, and the config used; the same files are the content of
# `snakemake --report report.html`.


rule report:
    input:
        metrics=f"{RUN}/metrics.tsv",
        logs=training_logs,
        mining=mining_stats,
        self_checks=self_check_results,
        audits=audits,
    output:
        metrics_png=report(
            f"{RUN}/report/metrics.png",
            caption="../workflow/report/metrics.rst",
            category="Metrics",
        ),
        loss_png=report(
            f"{RUN}/report/loss.png",
            caption="../workflow/report/loss.rst",
            category="Training",
        ),
        rounds=report(
            f"{RUN}/report/rounds.tsv",
            caption="../workflow/report/rounds.rst",
            category="Rounds",
        ),
        self_check=report(
            f"{RUN}/report/self_check.tsv",
            caption="../workflow/report/self_check.rst",
            category="Metrics",
        ),
        metrics_table=report(
            f"{RUN}/report/metrics.tsv",
            caption="../workflow/report/metrics_table.rst",
            category="Metrics",
        ),
        audit_png=report(
            f"{RUN}/report/audit.png",
            caption="../workflow/report/audit.rst",
            category="Rounds",
        ),
        audit=report(
            f"{RUN}/report/audit.tsv",
            caption="../workflow/report/audit_table.rst",
            category="Rounds",
        ),
        config=report(
            f"{RUN}/report/config.yaml",
            caption="../workflow/report/config.rst",
            category="Configuration",
        ),
        # Beside metrics.tsv: CPU- and GPU-hours per round, for the control, and in all.
        compute=report(
            f"{RUN}/compute.tsv",
            caption="../workflow/report/compute.rst",
            category="Compute",
        ),
        compute_png=report(
            f"{RUN}/report/compute.png",
            caption="../workflow/report/compute.rst",
            category="Compute",
        ),
    params:
        config=config,
        # Benchmark files are read, not declared: every job upstream of metrics.tsv has written its own.
        benchmarks=benchmark_dirs,
        gpus=gpus_per_rule(),
        rounds=ANCE["rounds"],
        control=bool(CONTROL),
    log:
        f"{RUN}/logs/report.log",
    benchmark:
        f"{RUN}/benchmarks/report.tsv"
    conda:
        "../envs/evaluate.yaml"
    script:
        "../workflow/scripts/report.py"
