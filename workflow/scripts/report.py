"""Plots and tables of the rounds, and the configuration used (rule report)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import shutil

import yaml

from anceflow.io import atomic_path
from anceflow.report import audit_table, plot_audit, plot_losses, plot_metrics, rounds_table, write_table
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    inp, out = snakemake.input, snakemake.output
    plot_metrics(inp.metrics, out.metrics_png)
    plot_losses(list(inp.logs), out.loss_png)
    table = rounds_table(list(inp.mining), list(inp.logs), inp.metrics)
    write_table(table, out.rounds)
    audit = audit_table(list(inp.mining), list(inp.audits))
    write_table(audit, out.audit)
    plot_audit(audit, out.audit_png)
    shutil.copyfile(inp.metrics, out.metrics_table)
    with atomic_path(out.config) as tmp, open(tmp, "w") as fh:
        yaml.safe_dump(dict(snakemake.params.config), fh, sort_keys=False)
    log.info("rounds:\n%s", table.to_string(index=False))
    log.info("audit of the negatives:\n%s", audit.to_string(index=False))
