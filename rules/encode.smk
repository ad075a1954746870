# Encode: a checkpoint's vectors for the corpus (in independent shards) and each query split.


rule encode_corpus:
    input:
        checkpoint=f"{RUN}/checkpoints/{{system}}",
        tokens=tokenized("corpus"),
    output:
        vectors=intermediate(f"{RUN}/embeddings/{{system}}/corpus.{{shard}}.npy"),
        # A seeded sample of the shard's rows with their pids and vectors: the search's id self-check.
        probe=intermediate(f"{RUN}/embeddings/{{system}}/corpus.{{shard}}.probe.npz"),
    params:
        shards=config["encode"]["shards"],
        batch_size=config["encode"]["batch_size"],
        dtype=config["encode"]["dtype"],
        precision=config["encode"]["precision"],
    log:
        f"{RUN}/logs/encode_corpus.{{system}}.{{shard}}.log",
    benchmark:
        f"{RUN}/benchmarks/encode_corpus.{{system}}.{{shard}}.tsv"
    threads: 2
    resources:
        mem_mb=16000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/encode.py"


rule encode_queries:
    input:
        checkpoint=f"{RUN}/checkpoints/{{system}}",
        tokens=tokenized("queries.{split}"),
    output:
        intermediate(f"{RUN}/embeddings/{{system}}/queries.{{split}}.npy"),
    params:
        shards=1,
        batch_size=config["encode"]["batch_size"],
        dtype="float32",
        precision=config["encode"]["precision"],
    log:
        f"{RUN}/logs/encode_queries.{{system}}.{{split}}.log",
    benchmark:
        f"{RUN}/benchmarks/encode_queries.{{system}}.{{split}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/encode.py"
