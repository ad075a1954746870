# Prepare: validate the source and normalize it to parquet (collection, queries, qrels).


rule prepare:
    input:
        source_input,
    output:
        prepared_outputs(),
    params:
        source=DATASET["source"],
        splits=SPLITS,
        train_split=TRAIN_SPLIT,
        keep_unjudged=DATASET["keep_unjudged"],
        out_dir=output_dir,
    log:
        f"{RES}/logs/prepare.log",
    benchmark:
        f"{RES}/benchmarks/prepare.tsv"
    resources:
        mem_mb=4000,
    conda:
        "../envs/prepare.yaml"
    script:
        "../workflow/scripts/prepare.py"
