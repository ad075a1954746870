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
    """BM25 runs of the evaluation splits."""
    input:
        index=f"{RES}/bm25/index",
        queries=f"{PREP}/queries.{{split}}.parquet",
    output:
        f"{RES}/runs/bm25/{{split}}.trec",
    wildcard_constraints:
        split=alternatives(EVAL_SPLITS),
    params:
        k1=config["bm25"]["k1"],
        b=config["bm25"]["b"],
        hits=config["evaluate"]["depth"],
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


use rule bm25_search as bm25_search_train with:
    """The BM25 run of the training queries, which round 0's negatives come from."""
    input:
        index=f"{RES}/bm25/index",
        queries=f"{PREP}/queries.{TRAIN_SPLIT}.parquet",
    output:
        intermediate(f"{RES}/runs/bm25/{TRAIN_SPLIT}.trec"),
    params:
        k1=config["bm25"]["k1"],
        b=config["bm25"]["b"],
        hits=config["bm25"]["topk"],
        java=config["bm25"]["java"],
    log:
        f"{RES}/logs/bm25_search.{TRAIN_SPLIT}.log",
    benchmark:
        f"{RES}/benchmarks/bm25_search_train.{TRAIN_SPLIT}.tsv"


rule bm25_negatives:
    input:
        run=f"{RES}/runs/bm25/{TRAIN_SPLIT}.trec",
        queries=f"{PREP}/queries.{TRAIN_SPLIT}.parquet",
        collection=f"{PREP}/collection.parquet",
        qrels=f"{PREP}/qrels.{TRAIN_SPLIT}.parquet",
    output:
        negatives=f"{RUN}/negatives/round-0.parquet",
        stats=f"{RUN}/negatives/round-0.json",
    params:
        n=config["negatives_per_query"],
        depth=config["bm25"]["topk"],
        query_fraction=1.0,
        seed=job_seed,
        # Recorded in round-0.json as what mined the negatives (the run's own settings).
        bm25={"k1": config["bm25"]["k1"], "b": config["bm25"]["b"], "topk": config["bm25"]["topk"]},
    log:
        f"{RUN}/logs/bm25_negatives.log",
    benchmark:
        f"{RUN}/benchmarks/bm25_negatives.tsv"
    conda:
        "../envs/bm25.yaml"
    script:
        "../workflow/scripts/negatives.py"


rule bm25:
    """Target: BM25 runs for every split, their metrics, and the round-0 negatives."""
    input:
        system_metrics("bm25"),
        per_seed(f"{RUN}/negatives/round-0.parquet"),
