# Index and search: a faiss index per checkpoint, searched by each split's queries -> TREC runs.


rule build_index:
    input:
        corpus_shards,
    output:
        f"{RES}/index/{{system}}/index.faiss",
    params:
        index=config["index"],
        seed=config["seed"],
    log:
        f"{RES}/logs/build_index.{{system}}.log",
    benchmark:
        f"{RES}/benchmarks/build_index.{{system}}.tsv"
    threads: 2
    resources:
        mem_mb=32000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/build_index.py"


rule dense_search:
    input:
        index=f"{RES}/index/{{system}}/index.faiss",
        queries=f"{RES}/embeddings/{{system}}/queries.{{split}}.npy",
        query_rows=f"{TOK}/queries.{{split}}.rows.parquet",
        corpus_rows=f"{TOK}/corpus.rows.parquet",
        collection=f"{PREP}/collection.parquet",
    output:
        f"{RES}/runs/{{system}}/{{split}}.trec",
    wildcard_constraints:
        system=DENSE_SYSTEM,
    params:
        depth=dense_depth,
        chunks=MODEL["doc_chunks"],
        nprobe=config["index"]["nprobe"],
        ef_search=config["index"]["ef_search"],
        use_gpu=config["index"]["use_gpu"],
    log:
        f"{RES}/logs/dense_search.{{system}}.{{split}}.log",
    benchmark:
        f"{RES}/benchmarks/dense_search.{{system}}.{{split}}.tsv"
    threads: 2
    resources:
        mem_mb=32000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/dense_search.py"
