# Index and search: every query split of a checkpoint searched in one job -> TREC runs for the
# evaluation splits (and reranked candidate lists where a split has them) and, for a checkpoint
# that mines negatives, int32 rows of the training split.
# Exact search (index.type flat) reads the corpus shards directly; the approximate types build a
# faiss index first. Every search job also runs the id self-check (corpus rows searched with their
# own vectors must come back under their own pid; anceflow.search.check_self_retrieval).


rule build_index:
    input:
        corpus_shards,
    output:
        intermediate(f"{RUN}/index/{{system}}/index.faiss"),
    wildcard_constraints:
        system=DENSE_SYSTEM,
    params:
        index=config["index"],
        seed=job_seed,
    log:
        f"{RUN}/logs/build_index.{{system}}.log",
    benchmark:
        f"{RUN}/benchmarks/build_index.{{system}}.tsv"
    threads: 2
    resources:
        mem_mb=32000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/build_index.py"


rule dense_search:
    """Search the evaluation splits of a checkpoint that no round mines with."""
    input:
        unpack(search_input),
    output:
        runs=search_outputs(mining=False),
        self_check=self_check_result("{system}"),
    wildcard_constraints:
        system=alternatives(EVAL_ONLY_SYSTEMS),
    params:
        plan=search_plan,
        self_check=config["index"]["self_check"],
        chunks=MODEL["doc_chunks"],
        nprobe=config["index"]["nprobe"],
        ef_search=config["index"]["ef_search"],
        use_gpu=config["index"]["use_gpu"],
        max_cpu_hours=config["index"]["max_cpu_hours"],
    log:
        f"{RUN}/logs/dense_search.{{system}}.log",
    benchmark:
        f"{RUN}/benchmarks/dense_search.{{system}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/dense_search.py"


use rule dense_search as dense_search_mining with:
    output:
        runs=search_outputs(mining=True),
        self_check=self_check_result("{system}"),
        scores=intermediate(f"{RUN}/runs/{{system}}/{TRAIN_SPLIT}.scores.npy"),
        positives=intermediate(f"{RUN}/runs/{{system}}/{TRAIN_SPLIT}.positives.parquet"),
    wildcard_constraints:
        system=alternatives(MINING_SYSTEMS),
    log:
        f"{RUN}/logs/dense_search.{{system}}.log",
    benchmark:
        f"{RUN}/benchmarks/dense_search_mining.{{system}}.tsv"
