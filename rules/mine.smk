# Mine: round n's hard negatives from the top-k of an earlier checkpoint's dense run
# (round n-1-staleness) over the training queries, ANCE's uniform sampling without positives.


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
    log:
        f"{RUN}/logs/mine_negatives.round-{{n}}.log",
    benchmark:
        f"{RUN}/benchmarks/mine_negatives.round-{{n}}.tsv"
    conda:
        "../envs/evaluate.yaml"
    script:
        "../workflow/scripts/negatives.py"
