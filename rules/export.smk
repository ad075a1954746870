# Export: a checkpoint's index for other tools (Pyserini's FaissSearcher: index + docid).
# Checkpoint folders need no export: they load with AutoModel and with SentenceTransformer.


rule export_pyserini:
    input:
        unpack(export_input),
    output:
        directory(f"{RUN}/export/{{system}}/pyserini"),
    wildcard_constraints:
        system=DENSE_SYSTEM,
    log:
        f"{RUN}/logs/export_pyserini.{{system}}.log",
    benchmark:
        f"{RUN}/benchmarks/export_pyserini.{{system}}.tsv"
    resources:
        mem_mb=48000,
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/export_pyserini.py"


rule export:
    """Target: the last round's index for Pyserini (results/<name>/export/round-<N>/pyserini)."""
    input:
        export_target(),
