# Tokenize: prepared text -> memory-mapped token ids, once per (dataset, tokenizer, lengths).


rule tokenize_corpus:
    input:
        collection=f"{PREP}/collection.parquet",
        model=model_input,
    output:
        tokenized("corpus"),
        meta=f"{TOK}/corpus.json",
    params:
        prefix=token_prefix,
        tokenizer=MODEL_PATH,
        max_len=MODEL["max_doc_len"],
        chunks=MODEL["doc_chunks"],
        batch_size=config["tokenize"]["batch_size"],
        field_separator=config["tokenize"]["field_separator"],
    log:
        f"{TOK}/logs/tokenize_corpus.log",
    benchmark:
        f"{TOK}/benchmarks/tokenize_corpus.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../envs/tokenize.yaml"
    script:
        "../workflow/scripts/tokenize_corpus.py"


rule tokenize_queries:
    input:
        queries=f"{PREP}/queries.{{split}}.parquet",
        model=model_input,
    output:
        tokenized("queries.{split}"),
        meta=f"{TOK}/queries.{{split}}.json",
    params:
        prefix=token_prefix,
        tokenizer=MODEL_PATH,
        max_len=MODEL["max_query_len"],
        batch_size=config["tokenize"]["batch_size"],
    log:
        f"{TOK}/logs/tokenize_queries.{{split}}.log",
    benchmark:
        f"{TOK}/benchmarks/tokenize_queries.{{split}}.tsv"
    threads: 1
    conda:
        "../envs/tokenize.yaml"
    script:
        "../workflow/scripts/tokenize_queries.py"
