# Evaluate: per-query metrics of each system's run on each evaluation split; metrics.tsv per seed;
# with several seeds, metrics.tsv over them; comparison.tsv (paired tests against the control and
# round 0).


rule evaluate:
    input:
        run=f"{RUN}/runs/{{system}}/{{split}}.trec",
        qrels=f"{PREP}/qrels.{{split}}.parquet",
    output:
        per_query=f"{RUN}/eval/{{system}}/{{split}}.per_query.tsv",
        summary=f"{RUN}/eval/{{system}}/{{split}}.metrics.tsv",
    wildcard_constraints:
        system=DENSE_SYSTEM,
    params:
        relevance_level=relevance_level,
    log:
        f"{RUN}/logs/evaluate.{{system}}.{{split}}.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate.{{system}}.{{split}}.tsv"
    conda:
        "../envs/evaluate.yaml"
    script:
        "../workflow/scripts/evaluate.py"


use rule evaluate as evaluate_bm25 with:
    input:
        run=f"{RES}/runs/bm25/{{split}}.trec",
        qrels=f"{PREP}/qrels.{{split}}.parquet",
    output:
        per_query=f"{RES}/eval/bm25/{{split}}.per_query.tsv",
        summary=f"{RES}/eval/bm25/{{split}}.metrics.tsv",
    log:
        f"{RES}/logs/evaluate.bm25.{{split}}.log",
    benchmark:
        f"{RES}/benchmarks/evaluate.bm25.{{split}}.tsv"


use rule evaluate as evaluate_rerank with:
    input:
        run=f"{RUN}/runs/{{system}}/{{split}}.rerank.trec",
        qrels=f"{PREP}/qrels.{{split}}.parquet",
    output:
        per_query=f"{RUN}/eval/{{system}}/{{split}}.rerank.per_query.tsv",
        summary=f"{RUN}/eval/{{system}}/{{split}}.rerank.metrics.tsv",
    params:
        relevance_level=relevance_level,
        ranking="rerank",
    log:
        f"{RUN}/logs/evaluate.{{system}}.{{split}}.rerank.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate_rerank.{{system}}.{{split}}.tsv"


rule metrics:
    input:
        [path for system in SYSTEMS for path in system_metrics(system)],
    output:
        f"{RUN}/metrics.tsv",
    log:
        f"{RUN}/logs/metrics.log",
    benchmark:
        f"{RUN}/benchmarks/metrics.tsv"
    conda:
        "../envs/evaluate.yaml"
    script:
        "../workflow/scripts/metrics.py"


if MULTI_SEED:

    rule seed_metrics:
        """metrics.tsv over the seeds: means, then the number of seeds and each metric's spread."""
        input:
            expand(f"{RUN}/metrics.tsv", seed=SEEDS),
        output:
            f"{RES}/metrics.tsv",
        params:
            seeds=SEEDS,
        log:
            f"{RES}/logs/seed_metrics.log",
        benchmark:
            f"{RES}/benchmarks/seed_metrics.tsv"
        conda:
            "../envs/evaluate.yaml"
        script:
            "../workflow/scripts/seed_metrics.py"


rule compare:
    """comparison.tsv: every trained system against the bm25neg control and round 0, per split, by
    paired tests over the queries pooled over seeds; report/comparison.txt says it in words."""
    input:
        unpack(comparison_input),
    output:
        table=f"{RES}/comparison.tsv",
        text=report(
            f"{RES}/report/comparison.txt",
            caption="../workflow/report/comparison.rst",
            category="Metrics",
        ),
    params:
        plan=comparison_plan,
        trained=TRAINED,
        baselines=BASELINES,
        seed=config["seed"],
    log:
        f"{RES}/logs/compare.log",
    benchmark:
        f"{RES}/benchmarks/compare.tsv"
    conda:
        "../envs/evaluate.yaml"
    script:
        "../workflow/scripts/compare.py"
