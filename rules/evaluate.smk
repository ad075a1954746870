# Evaluate: per-query metrics of each system's run on each evaluation split, and metrics.tsv.


rule evaluate:
    input:
        run=f"{RES}/runs/{{system}}/{{split}}.trec",
        qrels=f"{PREP}/qrels.{{split}}.parquet",
    output:
        per_query=f"{RES}/eval/{{system}}/{{split}}.per_query.tsv",
        summary=f"{RES}/eval/{{system}}/{{split}}.metrics.tsv",
    params:
        relevance_level=relevance_level,
    log:
        f"{RES}/logs/evaluate.{{system}}.{{split}}.log",
    benchmark:
        f"{RES}/benchmarks/evaluate.{{system}}.{{split}}.tsv"
    conda:
        "../envs/evaluate.yaml"
    script:
        "../workflow/scripts/evaluate.py"


use rule evaluate as evaluate_rerank with:
    input:
        run=f"{RES}/runs/{{system}}/{{split}}.rerank.trec",
        qrels=f"{PREP}/qrels.{{split}}.parquet",
    output:
        per_query=f"{RES}/eval/{{system}}/{{split}}.rerank.per_query.tsv",
        summary=f"{RES}/eval/{{system}}/{{split}}.rerank.metrics.tsv",
    params:
        relevance_level=relevance_level,
        ranking="rerank",
    log:
        f"{RES}/logs/evaluate.{{system}}.{{split}}.rerank.log",
    benchmark:
        f"{RES}/benchmarks/evaluate_rerank.{{system}}.{{split}}.tsv"


rule metrics:
    input:
        [path for system in SYSTEMS for path in system_metrics(system)],
    output:
        f"{RES}/metrics.tsv",
    log:
        f"{RES}/logs/metrics.log",
    benchmark:
        f"{RES}/benchmarks/metrics.tsv"
    conda:
        "../envs/evaluate.yaml"
    script:
        "../workflow/scripts/metrics.py"
