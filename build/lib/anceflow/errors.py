"""Errors that point a user at the exact place in their input that is wrong."""

from __future__ import annotations

from pathlib import Path

# Exit status of a job that saved its state on SIGTERM and stopped (128 + SIGTERM, what a shell
# reports for a process stopped by SIGTERM); re-running the job resumes it.
INTERRUPTED_EXIT = 143


class PermanentError(Exception):
    """A failure that running the same job again cannot change: bad input, a bad setting, the
    CPU-time guard of exact search. A retry of the job (Snakemake's ``retries``, the SLURM
    profile's 3) fails at once instead of queueing and redoing the work
    (:func:`anceflow.workflow.script_logging`); out-of-memory and time limits still retry."""


class InputError(PermanentError, ValueError):
    """Bad user input: names the file and, where known, the 1-based line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
