"""Plots and tables of the rounds, and the configuration used (rule report)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import shutil
from pathlib import Path

import yaml

from anceflow.io import atomic_path
from anceflow.compute import compute_table, read_benchmarks, write_compute
from anceflow.report import (audit_table, plot_audit, plot_compute, plot_losses, plot_metrics, rounds_table,
                             self_check_table, write_table)
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    inp, out = snakemake.input, snakemake.output
    plot_metrics(inp.metrics, out.metrics_png)
    plot_losses(list(inp.logs), out.loss_png)
    checks = self_check_table(list(inp.self_checks))
    write_table(checks, out.self_check)
    table = rounds_table(list(inp.mining), list(inp.logs), inp.metrics, checks)
    write_table(table, out.rounds)
    audit = audit_table(list(inp.mining), list(inp.audits))
    write_table(audit, out.audit)
    plot_audit(audit, out.audit_png)
    shutil.copyfile(inp.metrics, out.metrics_table)
    with atomic_path(out.config) as tmp, open(tmp, "w") as fh:
        yaml.safe_dump(dict(snakemake.params.config), fh, sort_keys=False)
    p = snakemake.params
    jobs = read_benchmarks(sorted(f for d in p.benchmarks for f in Path(d).glob("*.tsv")), p.gpus)
    compute = compute_table(jobs, p.rounds, p.control)
    write_compute(out.compute, compute)
    plot_compute(compute, inp.metrics, out.compute_png)
    log.info("rounds:\n%s\ncompute:\n%s", table.to_string(index=False), compute.to_string(index=False))
    log.info("id self-check:\n%s", checks.to_string(index=False))
    log.info("audit of the negatives:\n%s", audit.to_string(index=False))
