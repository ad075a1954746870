# Mine: round n's hard negatives from the top-k of an earlier checkpoint's dense run
# (round n-1-staleness) over the training queries, ANCE's uniform sampling without positives,
# with the false-negative controls of ance.negatives (rank window, relative margin, cross-encoder).
# Audit: every round's negatives (round 0's BM25 ones too) against the judgments and positives' texts.


rule mine_negatives:
    input:
        unpack(mining_input),
    output:
        negatives=f"{RUN}/negatives/round-{{n}}.parquet",
        stats=f"{RUN}/negatives/round-{{n}}.json",
    wildcard_constraints:
        n=r"[1-9]\d*",
    params:
        n=ANCE["negatives_per_query"],
        depth=ANCE["topk"],
        query_fraction=ANCE["query_fraction"],
        query_selection=ANCE["query_selection"],
        seed=job_seed,
        controls=mining_controls,
        use_gpu=config["index"]["use_gpu"],
        max_cpu_hours=config["index"]["max_cpu_hours"],
    log:
        f"{RUN}/logs/mine_negatives.round-{{n}}.log",
    benchmark:
        f"{RUN}/benchmarks/mine_negatives.round-{{n}}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/mine.py"


rule audit_negatives:
    """Near-duplicates of a positive and judged positives of other queries among round n's negatives."""
    input:
        unpack(audit_input),
    output:
        f"{RUN}/negatives/round-{{n}}.audit.json",
    params:
        jaccard=ANCE["negatives"]["near_duplicate_jaccard"],
        tokenizer=MODEL_PATH,
    log:
        f"{RUN}/logs/audit_negatives.round-{{n}}.log",
    benchmark:
        f"{RUN}/benchmarks/audit_negatives.round-{{n}}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/audit.py"
