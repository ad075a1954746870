"""Search every split of one checkpoint: TREC runs for evaluation, rows for mining (rules dense_search*)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.search import Split, dense_runs
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    inp, p = snakemake.input, snakemake.params
    candidates = iter(inp.candidates)
    splits = [Split(name, queries, rows, depth, out, next(candidates) if rerank else None)
              for (name, depth, rerank), queries, rows, out in zip(p.plan, inp.queries, inp.query_rows,
                                                                   snakemake.output.runs, strict=True)]
    out = snakemake.output
    if out.get("scores"):  # a mining checkpoint: the training split's scores, and its positives' (last in plan)
        splits[-1].scores, splits[-1].positives, splits[-1].qrels = out.scores, out.positives, inp.qrels
    stats = dense_runs(splits, shards=list(inp.shards), corpus_rows=inp.corpus_rows, collection=inp.collection,
                       tag=snakemake.wildcards.system, chunks=p.chunks, index_path=inp.get("index"), nprobe=p.nprobe,
                       ef_search=p.ef_search, use_gpu=p.use_gpu, max_cpu_hours=p.max_cpu_hours,
                       threads=snakemake.threads, probes=list(inp.probes), self_check=p.self_check,
                       self_check_out=snakemake.output.self_check)
    log.info("searched: %s", stats)
