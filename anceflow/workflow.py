"""Glue for ``workflow/scripts``: logging to the rule's log file, and clear errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback

from anceflow.errors import INTERRUPTED_EXIT, InputError


@contextlib.contextmanager
def script_logging(snakemake):
    """Send logging and stderr (progress bars) to ``snakemake.log[0]``; jobs run with the hub off.

    A failure is written to the log and, as one clear line, to the console, so the user
    sees what is wrong without opening the log.
    """
    if snakemake.rule not in ("fetch_model", "fetch_cross_encoder"):
        # Jobs load models from disk (fetch_model put hub models there on the submit host): never the
        # hub, which compute nodes may not reach.
        os.environ["HF_HUB_OFFLINE"] = "1"
    log_path = snakemake.log[0] if snakemake.log else None
    if log_path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        yield logging.getLogger("anceflow")
        return
    console = sys.stderr
    with open(log_path, "a", encoding="utf-8", buffering=1) as fh:
        logging.basicConfig(level=logging.INFO, stream=fh, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        sys.stderr = fh
        try:
            yield logging.getLogger("anceflow")
        except SystemExit as exc:
            if exc.code == INTERRUPTED_EXIT:  # training saved its state on SIGTERM
                print(f"\nrule {snakemake.rule} stopped by SIGTERM after saving its state; "
                      f"re-running the job resumes it. Log: {log_path}\n", file=console)
            raise
        except BaseException as exc:
            traceback.print_exc(file=fh)
            kind = "bad input" if isinstance(exc, InputError) else type(exc).__name__
            print(f"\nERROR in rule {snakemake.rule} ({kind}): {exc}\n  full log: {log_path}\n", file=console)
            raise
        finally:
            sys.stderr = console
