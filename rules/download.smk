# Download: fetch raw data (or generate the demo) into a folder in the "local" TSV layout, and a
# hub model to disk. Downloads run on the submit host (localrule): compute nodes may be offline.


rule demo_data:
    output:
        directory(f"{RES}/source"),
    params:
        seed=config["seed"],
        sizes=DATASET["demo"],
    log:
        f"{RES}/logs/demo_data.log",
    benchmark:
        f"{RES}/benchmarks/demo_data.tsv"
    conda:
        "../envs/prepare.yaml"
    script:
        "../workflow/scripts/demo_data.py"


rule download_msmarco:
    output:
        directory(f"{DATASET['download_dir']}/{{kind}}"),
    wildcard_constraints:
        kind="msmarco-passage|msmarco-doc",
    params:
        base_url=DATASET["msmarco_url"],
        nist_url=DATASET["nist_url"],
        cache=f"{DATASET['download_dir']}/raw",
    log:
        f"{DATASET['download_dir']}/logs/download_{{kind}}.log",
    benchmark:
        f"{DATASET['download_dir']}/benchmarks/download_{{kind}}.tsv"
    resources:
        downloads=1,
    localrule: True
    conda:
        "../envs/prepare.yaml"
    script:
        "../workflow/scripts/download_msmarco.py"


rule download_beir:
    output:
        directory(f"{DATASET['download_dir']}/beir/{{beir_name}}"),
    params:
        base_url=DATASET["beir_url"],
    log:
        f"{DATASET['download_dir']}/logs/download_beir_{{beir_name}}.log",
    benchmark:
        f"{DATASET['download_dir']}/benchmarks/download_beir_{{beir_name}}.tsv"
    resources:
        downloads=1,
    localrule: True
    conda:
        "../envs/prepare.yaml"
    script:
        "../workflow/scripts/download_beir.py"


rule download_ir_datasets:
    """dataset.source ir_datasets: the splits' ids (dataset.ir_datasets) in the local layout. ir_datasets
    downloads into IR_DATASETS_HOME (default ~/.ir_datasets); one job, because concurrent ir_datasets
    processes would write the same download files."""
    output:
        directory(IRDS_DIR),
    params:
        ids=IRDS_IDS,
        candidates=IRDS_CANDIDATES,
    log:
        f"{IRDS_DIR}.log",
    benchmark:
        f"{IRDS_DIR}.benchmark.tsv"
    resources:
        downloads=1,
    localrule: True
    conda:
        "../envs/prepare.yaml"
    script:
        "../workflow/scripts/download_ir_datasets.py"


rule fetch_model:
    """A snapshot of the hub model model.name_or_path, which every later job loads from disk."""
    output:
        directory(MODEL_PATH if FETCH_MODEL else f"{DATASET['download_dir']}/models/none"),
    params:
        name=MODEL["name_or_path"],
        revision=MODEL["revision"],
        endpoint=MODEL["hub_url"],
    log:
        f"{DATASET['download_dir']}/logs/fetch_model.{model_tag(MODEL['name_or_path'])}.log",
    resources:
        downloads=1,
    localrule: True
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/fetch_model.py"


rule fetch_cross_encoder:
    """A snapshot of the hub cross-encoder ance.negatives.cross_encoder.name_or_path, which mining loads from disk."""
    output:
        directory(CROSS_ENCODER_PATH if FETCH_CROSS_ENCODER else f"{DATASET['download_dir']}/cross-encoders/none"),
    params:
        name=CROSS_ENCODER,
        revision=ANCE["negatives"]["cross_encoder"]["revision"],
        endpoint=MODEL["hub_url"],
        key="ance.negatives.cross_encoder.name_or_path",
        cross_encoder=True,
    log:
        f"{DATASET['download_dir']}/logs/fetch_cross_encoder.{model_tag(CROSS_ENCODER or 'none')}.log",
    resources:
        downloads=1,
    localrule: True
    conda:
        "../envs/train.yaml"
    script:
        "../workflow/scripts/fetch_model.py"
