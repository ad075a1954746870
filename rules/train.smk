# Train: the starting checkpoint ("zeroshot"), round 0 (warmup on BM25 negatives) and
# every ANCE round n >= 1 (from checkpoint n-1, on negatives mined for round n).


rule init_model:
    input:
        model_input,
    output:
        directory(f"{RUN}/checkpoints/zeroshot"),
    params:
        name_or_path=MODEL_PATH,
        spec=encoder_spec,
        seed=job_seed,
    log:
        f"{RUN}/logs/init_model.log",
    benchmark:
        f"{RUN}/benchmarks/init_model.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/init_model.py"


rule train:
    input:
        init=train_init,
        negatives=f"{RUN}/negatives/round-{{n}}.parquet",
        query_tokens=tokenized(f"queries.{TRAIN_SPLIT}"),
        corpus_tokens=tokenized("corpus"),
    output:
        checkpoint=directory(f"{RUN}/checkpoints/round-{{n}}"),
        log_csv=f"{RUN}/train/round-{{n}}.log.csv",
    params:
        settings=train_settings,
        state_dir=f"{RUN}/state/round-{{n}}",
        # Editing the training code re-runs training (content, not file times, is compared).
        code=source_digest(),
    log:
        f"{RUN}/logs/train.round-{{n}}.log",
    benchmark:
        f"{RUN}/benchmarks/train.round-{{n}}.tsv"
    threads: 2
    resources:
        mem_mb=32000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/train.py"


use rule train as train_control with:
    input:
        init=f"{RUN}/checkpoints/round-0",
        negatives=f"{RUN}/negatives/round-0.parquet",
        query_tokens=tokenized(f"queries.{TRAIN_SPLIT}"),
        corpus_tokens=tokenized("corpus"),
    output:
        checkpoint=directory(f"{RUN}/checkpoints/bm25neg"),
        log_csv=f"{RUN}/train/bm25neg.log.csv",
    params:
        settings=control_settings,
        state_dir=f"{RUN}/state/bm25neg",
        code=source_digest(),
    log:
        f"{RUN}/logs/train.bm25neg.log",
    benchmark:
        f"{RUN}/benchmarks/train_control.tsv"


rule zeroshot:
    """Target: the pretrained model as is, encoded, indexed, searched and evaluated."""
    input:
        [path for m in system_metrics("zeroshot") for path in per_seed(m)],


rule warmup:
    """Target: round 0 trained on BM25 negatives, then encoded, indexed and evaluated."""
    input:
        [path for m in system_metrics("round-0") for path in per_seed(m)],
