# Train: the starting checkpoint ("zeroshot"), round 0 (warmup on BM25 negatives) and
# every ANCE round n >= 1 (from checkpoint n-1, on negatives mined for round n).


rule init_model:
    input:
        model_input,
    output:
        directory(f"{RES}/checkpoints/zeroshot"),
    params:
        name_or_path=MODEL_PATH,
        spec=encoder_spec,
        seed=config["seed"],
    log:
        f"{RES}/logs/init_model.log",
    benchmark:
        f"{RES}/benchmarks/init_model.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/init_model.py"


rule train:
    input:
        init=train_init,
        negatives=f"{RES}/negatives/round-{{n}}.parquet",
        query_tokens=tokenized(f"queries.{TRAIN_SPLIT}"),
        corpus_tokens=tokenized("corpus"),
    output:
        checkpoint=directory(f"{RES}/checkpoints/round-{{n}}"),
        log_csv=f"{RES}/train/round-{{n}}.log.csv",
    params:
        settings=train_settings,
        state_dir=f"{RES}/state/round-{{n}}",
        # Editing the training code re-runs training (content, not file times, is compared).
        code=source_digest(),
    log:
        f"{RES}/logs/train.round-{{n}}.log",
    benchmark:
        f"{RES}/benchmarks/train.round-{{n}}.tsv"
    threads: 2
    resources:
        mem_mb=32000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/train.py"


use rule train as train_control with:
    input:
        init=f"{RES}/checkpoints/round-0",
        negatives=f"{RES}/negatives/round-0.parquet",
        query_tokens=tokenized(f"queries.{TRAIN_SPLIT}"),
        corpus_tokens=tokenized("corpus"),
    output:
        checkpoint=directory(f"{RES}/checkpoints/bm25neg"),
        log_csv=f"{RES}/train/bm25neg.log.csv",
    params:
        settings=control_settings,
        state_dir=f"{RES}/state/bm25neg",
        code=source_digest(),
    log:
        f"{RES}/logs/train.bm25neg.log",
    benchmark:
        f"{RES}/benchmarks/train_control.tsv"


rule zeroshot:
    """Target: the pretrained model as is, encoded, indexed, searched and evaluated."""
    input:
        system_metrics("zeroshot"),


rule warmup:
    """Target: round 0 trained on BM25 negatives, then encoded, indexed and evaluated."""
    input:
        system_metrics("round-0"),
