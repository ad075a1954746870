# Train: the starting checkpoint ("zeroshot") and round 0, the warmup on BM25 negatives.


rule init_model:
    output:
        directory(f"{RES}/checkpoints/zeroshot"),
    params:
        name_or_path=MODEL["name_or_path"],
        spec=encoder_spec,
        seed=config["seed"],
    log:
        f"{RES}/logs/init_model.log",
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/init_model.py"


rule train_warmup:
    input:
        init=f"{RES}/checkpoints/zeroshot",
        negatives=f"{RES}/negatives/round-0.parquet",
        query_tokens=tokenized(f"queries.{TRAIN_SPLIT}"),
        corpus_tokens=tokenized("corpus"),
    output:
        checkpoint=directory(f"{RES}/checkpoints/round-0"),
        log_csv=f"{RES}/train/round-0.log.csv",
    params:
        settings=warmup_settings,
        state_dir=f"{RES}/state/round-0",
    log:
        f"{RES}/logs/train.round-0.log",
    benchmark:
        f"{RES}/benchmarks/train.round-0.tsv"
    threads: 2
    resources:
        mem_mb=32000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/train.py"


rule zeroshot:
    """Target: the pretrained model as is, encoded, indexed, searched and evaluated."""
    input:
        system_metrics("zeroshot"),


rule warmup:
    """Target: round 0 trained on BM25 negatives, then encoded, indexed and evaluated."""
    input:
        system_metrics("round-0"),
