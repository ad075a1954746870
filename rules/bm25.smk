# BM25 (Pyserini/Anserini): index, retrieve runs for every split, sample round-0 negatives.


rule bm25_index:
    input:
        f"{PREP}/collection.parquet",
    output:
        directory(f"{RES}/bm25/index"),
    params:
        java=config["bm25"]["java"],
    log:
        f"{RES}/logs/bm25_index.log",
    benchmark:
        f"{RES}/benchmarks/bm25_index.tsv"
    threads: 4
    resources:
        mem_mb=8000,
    conda:
        "../envs/bm25.yaml"
    script:
        "../workflow/scripts/bm25_index.py"


rule bm25_search:
    input:
        index=f"{RES}/bm25/index",
        queries=f"{PREP}/queries.{{split}}.parquet",
    output:
        f"{RES}/runs/bm25/{{split}}.trec",
    params:
        k1=config["bm25"]["k1"],
        b=config["bm25"]["b"],
        hits=bm25_depth,
        java=config["bm25"]["java"],
    log:
        f"{RES}/logs/bm25_search.{{split}}.log",
    benchmark:
        f"{RES}/benchmarks/bm25_search.{{split}}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
    conda:
        "../envs/bm25.yaml"
    script:
        "../workflow/scripts/bm25_search.py"


rule bm25_negatives:
    input:
        run=f"{RES}/runs/bm25/{TRAIN_SPLIT}.trec",
        qrels=f"{PREP}/qrels.{TRAIN_SPLIT}.parquet",
    output:
        negatives=f"{RES}/negatives/round-0.parquet",
        stats=f"{RES}/negatives/round-0.json",
    params:
        n=config["negatives_per_query"],
        depth=config["bm25"]["topk"],
        query_fraction=1.0,
        seed=config["seed"],
    log:
        f"{RES}/logs/bm25_negatives.log",
    benchmark:
        f"{RES}/benchmarks/bm25_negatives.tsv"
    conda:
        "../envs/bm25.yaml"
    script:
        "../workflow/scripts/negatives.py"


rule bm25:
    """Target: BM25 runs for every split, their metrics, and the round-0 negatives."""
    input:
        system_metrics("bm25"),
        f"{RES}/negatives/round-0.parquet",
