"""comparison.tsv and its verdict lines: trained systems against the control and round 0 (rule compare)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.compare import compare_systems, read_per_query, verdict_lines, write_tsv
from anceflow.io import atomic_path
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p = snakemake.params
    tables = {(system, split, seed): read_per_query(path)
              for (system, split, seed), path in zip(p.plan, snakemake.input.per_query)}
    table = compare_systems(tables, p.trained, p.baselines, seed=p.seed)
    write_tsv(snakemake.output.table, table)
    lines = verdict_lines(table, p.trained)
    with atomic_path(snakemake.output.text) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    log.info("comparison:\n%s", "\n".join(lines))
